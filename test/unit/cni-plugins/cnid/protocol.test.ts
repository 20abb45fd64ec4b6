import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  encodeHello,
  encodeResult,
  encodeVerdict,
  FrameDecoder,
  maxFrameBytes,
  parseHello,
  parseResult,
  parseVerdict,
  ProtocolError,
  type Hello,
} from '../../../../lib/cni/cnid-protocol.js';

// The framing berth-cnid and the C shim share (lib/cni/cnid-protocol.ts).

const context = { cwd: '/', netns: 'net:[4026531840]', mntns: 'mnt:[4026531841]', euid: 0, umask: 0o022 };

function helloPayload(hello: Hello): Buffer {
  const frames = new FrameDecoder().push(encodeHello(hello));
  expect(frames).toHaveLength(1);
  return frames[0]!;
}

describe('frames', () => {
  it('a frame is a 4-byte big-endian length and the bytes', () => {
    expect([...encodeFrame('ok')]).toEqual([0, 0, 0, 2, 0x6f, 0x6b]);
    expect([...encodeFrame(Buffer.alloc(0))]).toEqual([0, 0, 0, 0]);
  });

  it('the decoder returns frames however the stream is split, and keeps the remainder', () => {
    const stream = Buffer.concat([encodeFrame('first'), encodeFrame(''), encodeFrame(Buffer.from([0, 1, 2, 255])), encodeFrame('last')]);
    for (const step of [1, 2, 3, 5, 7, stream.length]) {
      const decoder = new FrameDecoder();
      const out: Buffer[] = [];
      for (let i = 0; i < stream.length; i += step) out.push(...decoder.push(stream.subarray(i, i + step)));
      expect(out.map((b) => [...b])).toEqual([[...Buffer.from('first')], [], [0, 1, 2, 255], [...Buffer.from('last')]]);
      expect(decoder.pending).toBe(0);
    }
    const decoder = new FrameDecoder();
    expect(decoder.push(stream.subarray(0, 7))).toEqual([]);
    expect(decoder.pending).toBe(7);
  });

  it('a length over the limit is refused from the header alone', () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(maxFrameBytes + 1, 0);
    expect(() => new FrameDecoder().push(header)).toThrow(ProtocolError);
    header.writeUInt32BE(maxFrameBytes, 0);
    expect(new FrameDecoder().push(header)).toEqual([]);
    expect(() => encodeFrame(Buffer.alloc(maxFrameBytes + 1))).toThrow(/exceeds/);
  });
});

describe('HELLO', () => {
  it('round-trips build, plugin, caller context and environment', () => {
    const env = { CNI_COMMAND: 'ADD', CNI_ARGS: 'IP=10.0.0.2;K8S_POD_NAME=a=b', EMPTY: '', 'ÜNICODE': 'wert ✓' };
    const hello = parseHello(helloPayload({ buildId: 'abc123', plugin: 'berth-bridge', context, env }));
    expect(hello).toEqual({ buildId: 'abc123', plugin: 'berth-bridge', context, env });
  });

  it('reads the wire form the shim writes: NUL-separated fields, umask in octal', () => {
    const wire = Buffer.from('berth-cnid/1\0id\0berth-loopback\0/root\0net:[1]\0mnt:[2]\x000\x0077\0A=1\0A=2\0broken\0=x\0__proto__=p\0B=c=d');
    const hello = parseHello(wire);
    expect(hello.context).toEqual({ cwd: '/root', netns: 'net:[1]', mntns: 'mnt:[2]', euid: 0, umask: 0o77 });
    // The first of duplicates wins (getenv); entries without a name are not variables.
    expect(Object.entries(hello.env)).toEqual([['A', '1'], ['__proto__', 'p'], ['B', 'c=d']]);
    expect(Object.getPrototypeOf(hello.env)).toBeNull();
  });

  it('refuses another protocol, missing fields and bad numbers, naming the problem', () => {
    expect(() => parseHello(Buffer.from('GET / HTTP/1.1'))).toThrow(/expected protocol "berth-cnid\/1"/);
    expect(() => parseHello(Buffer.from('berth-cnid/1\0id\0p'))).toThrow(/at least 8 fields, got 3/);
    expect(() => parseHello(Buffer.from('berth-cnid/1\0i\0p\0/\0n\0m\0-1\x00022'))).toThrow(/euid/);
    expect(() => parseHello(Buffer.from('berth-cnid/1\0i\0p\0/\0n\0m\x000\x00999'))).toThrow(/umask/);
  });

  it('refuses to encode a field with NUL', () => {
    expect(() => encodeHello({ buildId: 'a\0b', plugin: 'p', context, env: {} })).toThrow(ProtocolError);
  });
});

describe('VERDICT and RESULT', () => {
  it('verdicts round-trip; an unknown one is an error', () => {
    for (const v of [{ kind: 'ok' }, { kind: 'mismatch', reason: 'build a differs' }, { kind: 'error', reason: '' }] as const) {
      expect(parseVerdict(new FrameDecoder().push(encodeVerdict(v))[0]!)).toEqual(v);
    }
    expect(() => parseVerdict(Buffer.from('maybe'))).toThrow(ProtocolError);
  });

  it('a result is three frames: exit code, stdout, stderr', () => {
    const bytes = encodeResult({ exitCode: 1, stdout: Buffer.from('{"code":7}\n'), stderr: Buffer.from([0xff, 0]) });
    const frames = new FrameDecoder().push(bytes);
    expect(frames.map((f) => f.toString('latin1'))).toEqual(['1', '{"code":7}\n', '\xff\0']);
    expect(parseResult(frames)).toEqual({ exitCode: 1, stdout: Buffer.from('{"code":7}\n'), stderr: Buffer.from([0xff, 0]) });
    expect(() => parseResult(frames.slice(0, 2))).toThrow(/3 frames/);
    expect(() => parseResult([Buffer.from('256'), Buffer.alloc(0), Buffer.alloc(0)])).toThrow(/exit code/);
  });
});
