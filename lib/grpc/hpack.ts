// HPACK (RFC 7541), the header compression of HTTP/2: a decoder that keeps the peer's dynamic
// table, and an encoder that writes plain literals and never touches a table. That pair lets
// lib/grpc/h2-authority.ts read every header block a client sends and hand the server an equivalent
// block of its own (see there for why).

/** One decoded header; `sensitive` marks a field the sender asked never to index. */
export interface HeaderField {
  name: string;
  value: string;
  sensitive: boolean;
}

export class HpackError extends Error {}

// The static table (RFC 7541 Appendix A): index 1..61. Names and values are ASCII.
const staticTable: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

// The Huffman code (RFC 7541 Appendix B) is canonical: codes of equal length are consecutive
// and ordered by symbol, so the code length of each of the 257 symbols (256 = EOS) defines it.
// One character per symbol: its length is the character code minus 64.
const huffmanLengths =
  'MW\\\\\\\\\\\\\\X^\\\\^\\\\\\\\\\\\\\\\^\\\\\\\\\\\\\\\\\\FJJLMFHKJJHKHFFFEEEFFFFFFFGHOFLJMFGGGGGGGGGGGGGGGGGGGGGGHGHMSMNFOEFE' +
  'FEFFFEGGFFFEFGFEEFGGGGGOKNM\\TVTTVVVWVWWWWWXWXXVWXWWWWUVWVWWXVUTVVWWUWVVXUVWWUUVUWVWWTVVVWVVWZZTSVWVY' +
  'ZZZ[[ZXYSUZ[[Z[XUUZZ\\[[[TXTUVUUWVVYYXXZWZ[ZZ[[[[[\\[[[[[Z^';

const EOS = 256;

/** Canonical decoding tables: per length, the first code, and where its symbols start. */
const huffman = (() => {
  const lengths = [...huffmanLengths].map((c) => c.charCodeAt(0) - 64);
  if (lengths.length !== 257) throw new Error('HPACK Huffman table is damaged');
  const symbols = [...lengths.keys()].sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const firstCode = new Array<number>(31).fill(0);
  const count = new Array<number>(31).fill(0);
  const offset = new Array<number>(31).fill(0);
  for (const s of symbols) count[lengths[s]!]! += 1;
  let code = 0;
  let index = 0;
  for (let len = 1; len <= 30; len++) {
    firstCode[len] = code;
    offset[len] = index;
    code = (code + count[len]!) * 2;
    index += count[len]!;
  }
  return { symbols, firstCode, count, offset, lengths };
})();

/** The Huffman code of a symbol (for tests and the table check). */
export function huffmanCode(symbol: number): { code: number; bits: number } {
  const bits = huffman.lengths[symbol]!;
  const rank = huffman.symbols.indexOf(symbol) - huffman.offset[bits]!;
  return { code: huffman.firstCode[bits]! + rank, bits };
}

export function huffmanDecode(data: Buffer): Buffer {
  const out: number[] = [];
  let code = 0;
  let bits = 0;
  for (const byte of data) {
    for (let i = 7; i >= 0; i--) {
      code = code * 2 + ((byte >> i) & 1);
      bits += 1;
      const rank = code - huffman.firstCode[bits]!;
      if (bits >= 5 && rank >= 0 && rank < huffman.count[bits]!) {
        const symbol = huffman.symbols[huffman.offset[bits]! + rank]!;
        if (symbol === EOS) throw new HpackError('Huffman string contains EOS');
        out.push(symbol);
        code = 0;
        bits = 0;
      } else if (bits > 30) {
        throw new HpackError('invalid Huffman code');
      }
    }
  }
  // What is left must be padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (bits > 7 || code !== 2 ** bits - 1) throw new HpackError('invalid Huffman padding');
  return Buffer.from(out);
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  byte(): number {
    if (this.pos >= this.buf.length) throw new HpackError('header block ends early');
    return this.buf[this.pos++]!;
  }

  /** An integer with an N-bit prefix (RFC 7541 5.1); `first` is the byte holding the prefix. */
  integer(first: number, prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = first & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return value;
      if (shift > 28) throw new HpackError('integer too large');
    }
  }

  string(): string {
    const first = this.byte();
    const length = this.integer(first, 7);
    if (this.pos + length > this.buf.length) throw new HpackError('string runs past the header block');
    const raw = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return (first & 0x80 ? huffmanDecode(raw) : raw).toString('latin1');
  }
}

/** Decodes the header blocks of one direction of one connection, in order. */
export class HpackDecoder {
  private readonly dynamic: [string, string][] = [];
  private size = 0;

  constructor(private maxSize = 4096) {}

  decode(block: Buffer): HeaderField[] {
    const r = new Reader(block);
    const out: HeaderField[] = [];
    while (!r.done) {
      const b = r.byte();
      if (b & 0x80) {
        const [name, value] = this.entry(r.integer(b, 7));
        out.push({ name, value, sensitive: false });
      } else if (b & 0x40) {
        const index = r.integer(b, 6);
        const name = index ? this.entry(index)[0] : r.string();
        const value = r.string();
        this.insert(name, value);
        out.push({ name, value, sensitive: false });
      } else if (b & 0x20) {
        this.maxSize = r.integer(b, 5);
        this.evict();
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = r.integer(b, 4);
        const name = index ? this.entry(index)[0] : r.string();
        out.push({ name, value: r.string(), sensitive: (b & 0x10) !== 0 });
      }
    }
    return out;
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError('index 0');
    if (index <= staticTable.length) return staticTable[index - 1]!;
    const e = this.dynamic[index - staticTable.length - 1];
    if (!e) throw new HpackError(`index ${index} is past the dynamic table`);
    return e;
  }

  private insert(name: string, value: string): void {
    this.dynamic.unshift([name, value]);
    this.size += name.length + value.length + 32;
    this.evict();
  }

  private evict(): void {
    while (this.size > this.maxSize && this.dynamic.length) {
      const [name, value] = this.dynamic.pop()!;
      this.size -= name.length + value.length + 32;
    }
  }
}

function writeInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function writeString(out: number[], s: string): void {
  const bytes = Buffer.from(s, 'latin1');
  writeInteger(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/** A header block of plain literals that never enter the receiver's dynamic table. */
export function encodeHeaderBlock(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  for (const f of fields) {
    out.push(f.sensitive ? 0x10 : 0x00);
    writeString(out, f.name);
    writeString(out, f.value);
  }
  return Buffer.from(out);
}
