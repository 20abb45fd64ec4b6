import { constants as bufferConstants } from 'node:buffer';
import { constants as zc, createInflate, inflateSync, type Inflate } from 'node:zlib';

// SPDY/3 header blocks, the name/value lists that SYN_STREAM, SYN_REPLY and HEADERS frames carry:
// how a block is laid out, the zlib dictionary it is compressed against, and the two compression
// contexts a session keeps, one per direction (spdy.ts owns them and feeds them in frame order).

/** The zlib dictionary of SPDY/3 header blocks: 65 length-prefixed header words, then a run of common values. */
export const headerDictionary: Buffer = (() => {
  const words = [
    'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language',
    'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding',
    'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'etag',
    'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since',
    'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
    'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning',
    'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin',
  ];
  const tail =
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
    '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
    '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
    'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
    'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
    'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
  const parts: Buffer[] = [];
  for (const w of words) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    parts.push(len, Buffer.from(w, 'latin1'));
  }
  parts.push(Buffer.from(tail, 'latin1'));
  return Buffer.concat(parts);
})();

/** Header names are lower case; a value with several entries joins them with NUL. */
export type SpdyHeaders = Record<string, string>;

export function encodeNameValues(headers: SpdyHeaders): Buffer {
  const entries = Object.entries(headers);
  const parts: Buffer[] = [u32(entries.length)];
  for (const [name, value] of entries) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(value, 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Decode a name/value block; more than `maxCount` pairs is an error, before any is read. */
export function decodeNameValues(block: Buffer, maxCount = Infinity): SpdyHeaders {
  const out: SpdyHeaders = {};
  let pos = 0;
  const need = (n: number): void => {
    if (pos + n > block.length) throw new Error('SPDY header block ends early');
  };
  need(4);
  const count = block.readUInt32BE(pos);
  pos += 4;
  if (count > maxCount) throw new Error(`SPDY header block with ${count} headers (the limit is ${maxCount})`);
  for (let i = 0; i < count; i++) {
    need(4);
    const nl = block.readUInt32BE(pos);
    pos += 4;
    need(nl);
    const name = block.subarray(pos, pos + nl).toString('utf8');
    pos += nl;
    need(4);
    const vl = block.readUInt32BE(pos);
    pos += 4;
    need(vl);
    const value = block.subarray(pos, pos + vl).toString('utf8');
    pos += vl;
    if (!name) throw new Error('SPDY header with an empty name');
    out[name] = name in out ? `${out[name]}\0${value}` : value;
  }
  return out;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/**
 * Our side of the header compression: a zlib stream made of stored (uncompressed) deflate
 * blocks. It is a valid continuation of one zlib stream for any inflater, with or without the
 * dictionary (the header announces it, as a compressor using it would), and needs no zlib call,
 * so a header frame is ready at once instead of after a round trip through the threadpool.
 * Header blocks are a few hundred bytes; compressing them would save little.
 */
export class StoredDeflate {
  private started = false;

  process(input: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.started) {
      this.started = true;
      parts.push(zlibHeader);
    }
    for (let at = 0; at < input.length; at += 0xffff) {
      const piece = input.subarray(at, at + 0xffff);
      parts.push(storedBlockHeader(piece.length), piece);
    }
    // An empty stored block ends every header block, as a zlib sync flush does: inflaters such
    // as Go's hand out a block's bytes only once they have read the next block's header, and
    // must not need bytes of the next frame to do it.
    parts.push(storedBlockHeader(0));
    return Buffer.concat(parts);
  }
}

/** CMF 0x78 (deflate, 32 KiB window); FLG with FDICT and the check bits; the dictionary's Adler-32. */
const zlibHeader: Buffer = (() => {
  const cmf = 0x78;
  const head = Buffer.alloc(6);
  head[0] = cmf;
  head[1] = 0x20 + ((31 - ((cmf * 256 + 0x20) % 31)) % 31);
  head.writeUInt32BE(adler32(headerDictionary), 2);
  return head;
})();

/** BFINAL 0, BTYPE 00 (stored), padding to the byte boundary; LEN and its complement, little-endian. */
function storedBlockHeader(length: number): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt16LE(length, 1);
  h.writeUInt16LE(~length & 0xffff, 3);
  return h;
}

function adler32(data: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/** A header block inflated past its limit; the inflater stopped there, so the session's zlib context is lost. */
export class HeaderBlockTooLarge extends RangeError {
  constructor(readonly limit: number) {
    super(`SPDY header block inflates to more than ${limit} bytes`);
    this.name = 'HeaderBlockTooLarge';
  }
}

/**
 * The peer's header blocks: one zlib stream across the session. Early in a session (all an exec
 * or attach ever sends) the whole stream so far is inflated synchronously, which is quicker
 * than a round trip through zlib's threadpool and needs no zlib stream at all. Past a few
 * blocks, syncHistoryBytes of history or syncOutputBytes of output, a streaming inflater takes
 * over: it is made then, fed the history, and used from then on. Each block is inflated with an
 * output limit, and inflating stops there: a few KiB of deflate can claim gigabytes.
 */
export class HeaderInflater {
  private stream?: ZStream;
  /** Every block so far, while the synchronous path is in use; undefined once it is not. */
  private history: Buffer[] | undefined = [];
  private historyBytes = 0;
  private produced = 0;

  /** The block's name/value bytes; throws (or rejects with) HeaderBlockTooLarge past `maxBytes`. */
  process(block: Buffer, maxBytes = Infinity): Buffer | Promise<Buffer> {
    if (this.history && this.history.length < syncBlocks && this.historyBytes + block.length <= syncHistoryBytes && this.produced <= syncOutputBytes) {
      try {
        const all = inflateSync(Buffer.concat([...this.history, block]), {
          dictionary: headerDictionary,
          finishFlush: zc.Z_SYNC_FLUSH,
          maxOutputLength: Math.min(this.produced + maxBytes, bufferConstants.MAX_LENGTH),
        });
        this.history.push(block);
        this.historyBytes += block.length;
        const out = all.subarray(this.produced);
        this.produced = all.length;
        return out;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new HeaderBlockTooLarge(maxBytes);
        // Anything else: the streaming inflater says what is wrong.
      }
    }
    if (!this.stream) {
      this.stream = new ZStream(createInflate({ dictionary: headerDictionary }));
      for (const earlier of this.history ?? []) this.stream.process(earlier, Infinity).catch(() => undefined);
    }
    this.history = undefined;
    return this.stream.process(block, maxBytes);
  }

  close(): void {
    this.stream?.close();
  }
}

const syncBlocks = 32;
const syncHistoryBytes = 16 * 1024;
const syncOutputBytes = 64 * 1024;

/** One zlib context, fed strictly in order; each call gets the output of its own input. */
class ZStream {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly z: Inflate) {
    z.on('error', () => undefined);
  }

  process(input: Buffer, maxBytes: number): Promise<Buffer> {
    const run = this.chain.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          const chunks: Buffer[] = [];
          let bytes = 0;
          const onData = (c: Buffer): void => {
            bytes += c.length;
            if (bytes <= maxBytes) {
              chunks.push(c);
              return;
            }
            // Stop inflating: the rest of this block is never made.
            this.z.off('data', onData);
            this.z.destroy();
            reject(new HeaderBlockTooLarge(maxBytes));
          };
          const onError = (err: Error): void => {
            this.z.off('data', onData);
            reject(err);
          };
          this.z.on('data', onData);
          this.z.once('error', onError);
          this.z.write(input);
          this.z.flush(zc.Z_SYNC_FLUSH, () => {
            this.z.off('data', onData);
            this.z.off('error', onError);
            resolve(Buffer.concat(chunks));
          });
        }),
    );
    this.chain = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.z.destroy();
  }
}
