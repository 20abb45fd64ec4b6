import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatDuration, PullProgressWatch } from '../../../../cri-shim/pod/pull-progress.js';

// The watch with a hand-driven clock: check() decides, so nothing here waits on real time.
function watch(timeoutMs: number): { w: PullProgressWatch; advance: (ms: number) => void } {
  let now = 1_000_000;
  const w = new PullProgressWatch(timeoutMs, 'image reg.test/app:1', () => now);
  return { w, advance: (ms) => void (now += ms) };
}

describe('pull progress watch (imagePullProgressTimeout)', () => {
  it('cancels every open transfer when no byte arrives for the timeout, with one error naming the image and the timeout', async () => {
    const { w, advance } = watch(300_000);
    const a = w.track(new PassThrough());
    const b = w.track(new PassThrough());
    const errors: Error[] = [];
    a.on('error', (e) => errors.push(e));
    b.on('error', (e) => errors.push(e));
    advance(299_999);
    w.check();
    expect(w.error).toBeUndefined();
    advance(1);
    w.check();
    await new Promise((r) => setImmediate(r));
    expect(w.error).toMatchObject({ kind: 'deadline-exceeded', message: 'image reg.test/app:1: no data from the registry for 5m (imagePullProgressTimeout); pull cancelled' });
    expect(errors).toEqual([w.error, w.error]);
    expect(a.destroyed && b.destroyed).toBe(true);
  });

  it('every chunk resets the clock, and passes through unchanged', async () => {
    const { w, advance } = watch(1000);
    const s = new PassThrough();
    const out: Buffer[] = [];
    w.track(s).on('data', (c: Buffer) => out.push(c));
    for (let i = 0; i < 10; i++) {
      advance(900);
      s.write(Buffer.from(`${i}`));
      await new Promise((r) => setImmediate(r));
      w.check();
    }
    expect(w.error).toBeUndefined();
    expect(Buffer.concat(out).toString()).toBe('0123456789');
    w.stop();
  });

  it('time with no transfer open does not count, and the clock restarts with the next one', async () => {
    const { w, advance } = watch(1000);
    const s = w.track(new PassThrough());
    s.destroy();
    await new Promise((r) => setImmediate(r)); // 'close' comes on the next turn
    advance(5000);
    w.check();
    expect(w.error).toBeUndefined();
    const next = w.track(new PassThrough());
    next.on('error', () => undefined);
    advance(999);
    w.check();
    expect(w.error).toBeUndefined();
    advance(1);
    w.check();
    expect(w.error).toBeDefined();
  });

  it('a request that never answers is a stall too', async () => {
    const { w, advance } = watch(1000);
    const pending = w.guard(() => new Promise<never>(() => undefined));
    advance(1000);
    w.check();
    await expect(pending).rejects.toMatchObject({ kind: 'deadline-exceeded' });
    await expect(w.guard(async () => 1)).rejects.toBe(w.error);
  });

  it('0 turns it off', async () => {
    const { w, advance } = watch(0);
    const s = w.track(new PassThrough());
    advance(1e9);
    w.check();
    expect(w.error).toBeUndefined();
    expect(s.destroyed).toBe(false);
    expect(await w.guard(async () => 7)).toBe(7);
  });

  it('writes the timeout as the setting would', () => {
    expect([formatDuration(300_000), formatDuration(2000), formatDuration(2500), formatDuration(250), formatDuration(7_200_000)]).toEqual(['5m', '2s', '2.5s', '250ms', '2h']);
  });
});
