import { describe, expect, it } from 'vitest';
import { fitOutput } from '../../../../cri-shim/io/exec-io.js';

// How ExecSync's output is cut to fit one reply: the first bytes kept, each stream at least half.

describe('ExecSync output in one reply', () => {
  const bytes = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

  it('leaves output that fits alone', () => {
    const r = fitOutput(bytes(10, 1), bytes(20, 2), 100);
    expect([r.stdout.length, r.stderr.length]).toEqual([10, 20]);
  });

  it('gives each stream half when both are over, keeping their first bytes', () => {
    const out = Buffer.concat([bytes(50, 1), bytes(100, 3)]);
    const r = fitOutput(out, bytes(150, 2), 100);
    expect([r.stdout.length, r.stderr.length]).toEqual([50, 50]);
    expect(r.stdout.equals(bytes(50, 1))).toBe(true);
  });

  it('lets one stream use what the other does not need', () => {
    expect(Object.values(fitOutput(bytes(150, 1), bytes(10, 2), 100)).map((b) => b.length)).toEqual([90, 10]);
    expect(Object.values(fitOutput(bytes(10, 1), bytes(150, 2), 100)).map((b) => b.length)).toEqual([10, 90]);
  });
});
