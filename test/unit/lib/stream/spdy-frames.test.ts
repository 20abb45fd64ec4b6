import { describe, expect, it } from 'vitest';
import { FrameReader, FrameType } from '../../../../lib/stream/spdy-frames.js';

// SPDY/3 frames cut out of a byte stream, without a session.

describe('SPDY/3 frames', () => {
  it('reads frames split anywhere: data payloads in pieces without loss, control frames whole', () => {
    // A fixed pseudo-random sequence, so a failure is reproducible.
    let seed = 12345;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const parts: Buffer[] = [];
    const payloads: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const len = rand(70_000);
      const h = Buffer.alloc(8);
      h.writeUInt32BE(1 + (i % 3) * 2, 0);
      h.writeUInt32BE(((i % 7 === 0 ? 1 : 0) << 24) | len, 4);
      const d = Buffer.alloc(len, i % 256);
      parts.push(h, d);
      payloads.push(d);
      if (i % 10 === 0) {
        const ping = Buffer.alloc(12);
        ping.writeUInt16BE(0x8003, 0);
        ping.writeUInt16BE(FrameType.Ping, 2);
        ping.writeUInt32BE(4, 4);
        ping.writeUInt32BE(i + 1, 8);
        parts.push(ping);
      }
    }
    const all = Buffer.concat(parts);
    const reader = new FrameReader();
    const data: Buffer[] = [];
    const pings: number[] = [];
    let fins = 0;
    for (let pos = 0; pos < all.length; ) {
      const n = 1 + rand(100_000);
      for (const f of reader.push(all.subarray(pos, pos + n))) {
        if (f.control) pings.push(f.payload.readUInt32BE(0));
        else {
          data.push(f.data);
          if (f.flags & 1) fins += 1;
        }
      }
      pos += n;
    }
    expect(Buffer.concat(data).equals(Buffer.concat(payloads))).toBe(true);
    expect(pings).toEqual(Array.from({ length: 20 }, (_, k) => k * 10 + 1));
    expect(fins).toBe(29);
  });
});
