// The wire protocol between berth-cnid and its clients (the C shim, shim.c, and berth-cri's CNI
// runner, lib/cni/cnid-client.ts), over a unix stream socket.
// One connection carries one plugin invocation:
//
//   shim   -> daemon  HELLO   fields joined by NUL: "berth-cnid/1", build id, plugin name,
//                             cwd, readlink(/proc/self/ns/net), readlink(/proc/self/ns/mnt),
//                             euid (decimal), umask (octal), then one "NAME=value" per
//                             environment variable, in environ order
//   daemon -> shim    VERDICT "ok", or "mismatch" NUL reason (the shim runs the plugin itself)
//                             The cwd, namespaces, euid and umask are the caller's claims: the
//                             daemon checks them against what the kernel says about the
//                             connected process (peer.ts) and declines a caller that lies.
//   shim   -> daemon  STDIN   the plugin's stdin, raw bytes (sent only after "ok": until then
//                             the shim has not read stdin, so falling back loses nothing)
//   daemon -> shim    RESULT  three frames: exit code (decimal), stdout bytes, stderr bytes
//
// Every message is a frame: a 4-byte big-endian length, then that many bytes. C can write it
// with two write(2)s and read it without a parser; NUL-separated fields suit C strings (an
// environment entry or a path can never contain NUL). A frame over maxFrameBytes is an error.
// A malformed message gets VERDICT "error" NUL reason, then the daemon closes the connection.

export const protocolMagic = 'berth-cnid/1';
export const maxFrameBytes = 16 * 1024 * 1024;
export const frameHeaderBytes = 4;

/** HELLO fields before the environment. */
const helloFixedFields = 8;

export interface CallerContext {
  cwd: string;
  netns: string;
  mntns: string;
  euid: number;
  /** e.g. 0o022 */
  umask: number;
}

export interface Hello {
  buildId: string;
  plugin: string;
  context: CallerContext;
  env: Record<string, string>;
}

export type Verdict = { kind: 'ok' } | { kind: 'mismatch' | 'error'; reason: string };

export interface PluginResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export function encodeFrame(payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  if (body.length > maxFrameBytes) throw new ProtocolError(`frame of ${body.length} bytes exceeds the ${maxFrameBytes}-byte limit`);
  const header = Buffer.allocUnsafe(frameHeaderBytes);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/**
 * Splits a byte stream into frames. Feed it whatever the socket delivers; it returns the frames
 * completed so far and keeps the remainder. Throws ProtocolError on an oversized length, before
 * buffering any of it.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.buffered < frameHeaderBytes) break;
      const head = this.peek(frameHeaderBytes);
      const length = head.readUInt32BE(0);
      if (length > maxFrameBytes) throw new ProtocolError(`frame length ${length} exceeds the ${maxFrameBytes}-byte limit`);
      if (this.buffered < frameHeaderBytes + length) break;
      const all = this.take(frameHeaderBytes + length);
      frames.push(all.subarray(frameHeaderBytes));
    }
    return frames;
  }

  /** Bytes received that do not yet form a whole frame. */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

export function encodeHello(hello: Hello): Buffer {
  const { context: c } = hello;
  const fields = [protocolMagic, hello.buildId, hello.plugin, c.cwd, c.netns, c.mntns, String(c.euid), c.umask.toString(8)];
  for (const [name, value] of Object.entries(hello.env)) fields.push(`${name}=${value}`);
  for (const f of fields) if (f.includes('\0')) throw new ProtocolError('a HELLO field contains NUL');
  return encodeFrame(fields.join('\0'));
}

export function parseHello(payload: Buffer): Hello {
  const fields = payload.toString('utf8').split('\0');
  if (fields[0] !== protocolMagic) {
    throw new ProtocolError(`HELLO: expected protocol ${JSON.stringify(protocolMagic)}, got ${JSON.stringify(fields[0]?.slice(0, 40))}`);
  }
  if (fields.length < helloFixedFields) throw new ProtocolError(`HELLO: expected at least ${helloFixedFields} fields, got ${fields.length}`);
  const [, buildId, plugin, cwd, netns, mntns, euidText, umaskText] = fields as [string, string, string, string, string, string, string, string];
  if (!/^\d+$/.test(euidText)) throw new ProtocolError(`HELLO: euid: expected a decimal number, got ${JSON.stringify(euidText)}`);
  if (!/^[0-7]{1,4}$/.test(umaskText)) throw new ProtocolError(`HELLO: umask: expected an octal number, got ${JSON.stringify(umaskText)}`);
  // No prototype: a variable named __proto__ or constructor is just a variable.
  const env = Object.create(null) as Record<string, string>;
  for (const entry of fields.slice(helloFixedFields)) {
    const eq = entry.indexOf('=');
    // environ entries without "=" exist only if someone built a broken environment; like
    // getenv(3), which never matches them, ignore them. The first of duplicates wins, as in getenv.
    if (eq <= 0) continue;
    const name = entry.slice(0, eq);
    if (!(name in env)) env[name] = entry.slice(eq + 1);
  }
  return { buildId, plugin, context: { cwd, netns, mntns, euid: Number(euidText), umask: parseInt(umaskText, 8) }, env };
}

export function encodeVerdict(verdict: Verdict): Buffer {
  return encodeFrame(verdict.kind === 'ok' ? 'ok' : `${verdict.kind}\0${verdict.reason}`);
}

export function parseVerdict(payload: Buffer): Verdict {
  const text = payload.toString('utf8');
  if (text === 'ok') return { kind: 'ok' };
  const nul = text.indexOf('\0');
  const kind = nul < 0 ? text : text.slice(0, nul);
  if (kind !== 'mismatch' && kind !== 'error') throw new ProtocolError(`VERDICT: unknown ${JSON.stringify(kind.slice(0, 40))}`);
  return { kind, reason: nul < 0 ? '' : text.slice(nul + 1) };
}

export function encodeResult(result: PluginResult): Buffer {
  return Buffer.concat([encodeFrame(String(result.exitCode)), encodeFrame(result.stdout), encodeFrame(result.stderr)]);
}

export function parseResult(frames: readonly Buffer[]): PluginResult {
  if (frames.length !== 3) throw new ProtocolError(`RESULT: expected 3 frames, got ${frames.length}`);
  const codeText = frames[0]!.toString('utf8');
  if (!/^\d{1,3}$/.test(codeText) || Number(codeText) > 255) throw new ProtocolError(`RESULT: exit code: expected 0-255, got ${JSON.stringify(codeText)}`);
  return { exitCode: Number(codeText), stdout: frames[1]!, stderr: frames[2]! };
}
