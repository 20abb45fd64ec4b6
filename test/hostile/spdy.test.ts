import { statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { deflateRawSync, constants as zc } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ContainerState } from '../../proto/gen/runtime/v1/api.js';
import type { CriWorld } from '../../world/cri.js';
import type { AttackReport } from '../../world/hostile.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';
import { GoAway, HeaderCompressor, nameValues, Rst, SpdyWire, synStream, Type, data, words } from './spdy-wire.js';
import { attackCri, busybox, endlessWriterAttachUrl, execUrl, expectFloodCutOff, expectSurvived } from './stream-attack.js';

// Hostile SPDY clients against berth-cri's streaming server, bytes written by hand: each attack
// must leave berth-cri alive, its memory bounded (< 64 MiB more) and its CRI socket answering
// within 500 ms, and the client must see the refusal the SPDY/3.1 spec gives for it.

/** `copies` raw deflate runs of `each` zero bytes behind a zlib header: a header block that inflates to copies x each bytes. */
function zeroBomb(each: number, copies: number): Buffer {
  const run = deflateRawSync(Buffer.alloc(each), { level: 9, finishFlush: zc.Z_SYNC_FLUSH });
  return Buffer.concat([Buffer.from([0x78, 0x01]), ...Array.from({ length: copies }, () => run)]);
}

/** How a header frame past a limit is refused: its stream reset with FRAME_TOO_LARGE, then the session with GOAWAY. */
function expectFrameTooLarge(wire: SpdyWire, id: number): void {
  expect(wire.control(Type.RstStream)).toContainEqual([id, Rst.FrameTooLarge]);
  expect(wire.control(Type.GoAway)[0]![1]).toBe(GoAway.ProtocolError);
}

describe.skipIf(!isRoot)('hostile SPDY clients', () => {
  let world!: CriWorld;
  useCriWorld(['busybox'], (w) => (world = w));

  /** Upgrade an exec URL for `containerId`, send `frames`, and wait for the server's GOAWAY and close. */
  async function sendUntilGoAway(containerId: string, frames: Buffer[]): Promise<{ wire: SpdyWire; report: AttackReport }> {
    let wire!: SpdyWire;
    const report = await attackCri(world, async () => {
      wire = await SpdyWire.upgrade(await execUrl(world, containerId, ['true']));
      wire.socket.write(Buffer.concat(frames));
      await wire.waitFor(Type.GoAway);
      await wire.closed;
    });
    return { wire, report };
  }

  it('a 2 MB SYN_STREAM whose header block inflates to 2 GiB is refused from its frame header (FRAME_TOO_LARGE, GOAWAY)', async () => {
    const c = await busybox(world);
    const bomb = zeroBomb(64 << 20, 32);
    expect(bomb.length).toBeGreaterThan(1 << 20);
    const { wire, report } = await sendUntilGoAway(c.id, [synStream(1, bomb)]);
    expectSurvived(report);
    expectFrameTooLarge(wire, 1);
  });

  it('a header block of 30 KiB inflating to 30 MiB is cut off at the inflate limit (FRAME_TOO_LARGE, GOAWAY)', async () => {
    const c = await busybox(world);
    const bomb = zeroBomb(1 << 20, 30);
    expect(bomb.length).toBeLessThan(32 * 1024 - 10);
    // The first bomb starts the zlib stream; more of them follow in the same stream.
    const more = deflateRawSync(Buffer.alloc(30 << 20), { level: 9, finishFlush: zc.Z_SYNC_FLUSH });
    const { wire, report } = await sendUntilGoAway(c.id, [synStream(1, bomb), synStream(3, more), synStream(5, more), synStream(7, more)]);
    expectSurvived(report);
    expectFrameTooLarge(wire, 1);
  });

  it('streams past the ones an exec uses are refused (REFUSED_STREAM), however many are opened', async () => {
    const c = await busybox(world);
    let wire!: SpdyWire;
    const extra = 20_000;
    // Made before the attack (the probe times berth-cri, not this process compressing), as
    // continuations of the stream that the first streams' headers start.
    const headers = new HeaderCompressor(true);
    const first = ['error', 'stdout', 'stderr'];
    const batches = Array.from({ length: extra / 1000 }, (_, b) =>
      Buffer.concat(Array.from({ length: 1000 }, (_, i) => synStream(2 * first.length + 1 + 2 * (b * 1000 + i), headers.block(nameValues({ streamtype: 'stdout', n: String(i) }))))),
    );
    const report = await attackCri(world, async () => {
      wire = await SpdyWire.upgrade(await execUrl(world, c.id, ['sleep', '30']));
      await wire.openStreams(first);
      for (const batch of batches) {
        if (!wire.socket.write(batch)) await new Promise((r) => wire.socket.once('drain', r));
      }
      await wire.waitFor(Type.RstStream, (w) => w[0] === 2 * first.length + 1 + 2 * (extra - 1), 60_000);
    });
    expectSurvived(report);
    const refused = wire.control(Type.RstStream).filter((w) => w[1] === Rst.RefusedStream);
    expect(refused).toHaveLength(extra);
    wire.socket.destroy();
  });

  it('a port-forward session gets REFUSED_STREAM past 256 open streams', async () => {
    const c = await busybox(world);
    let wire!: SpdyWire;
    const report = await attackCri(world, async () => {
      const { url } = await world.runtime.portForward({ podSandboxId: c.podId, port: [80] });
      wire = await SpdyWire.upgrade(url, 'portforward.k8s.io');
      const settings = await wire.waitFor(Type.Settings);
      expect(settings).toEqual([1, 4, 256]);
      const headers = new HeaderCompressor();
      // Data streams whose error stream never comes: each waits for its partner, open.
      const frames = Array.from({ length: 300 }, (_, i) => synStream(2 * i + 1, headers.block(nameValues({ streamtype: 'data', port: '80', requestid: String(i) }))));
      wire.socket.write(Buffer.concat(frames));
      await wire.waitFor(Type.RstStream, (w) => w[0] === 599);
    });
    expectSurvived(report);
    const refused = wire.control(Type.RstStream).filter((w) => w[1] === Rst.RefusedStream);
    expect(refused.length).toBeGreaterThanOrEqual(300 - 256);
    expect(refused.every((w) => w[0]! > 2 * 256)).toBe(true);
    wire.socket.destroy();
  });

  it('DATA past the window from a client that keeps to windows is FLOW_CONTROL_ERROR, not buffered', async () => {
    // The command never reads its stdin: once the pipe and the stream are full, the window stays shut.
    const c = await busybox(world);
    let wire!: SpdyWire;
    let sent = 0;
    const report = await attackCri(world, async () => {
      wire = await SpdyWire.upgrade(await execUrl(world, c.id, ['sleep', '30'], { stdin: true }));
      const ids = await wire.openStreams(['error', 'stdin', 'stdout', 'stderr']);
      const chunk = data(ids.stdin!, Buffer.alloc(64 * 1024, 'z'));
      while (sent < 256 << 20 && !wire.control(Type.RstStream).some((w) => w[0] === ids.stdin)) {
        if (!wire.socket.write(chunk)) await new Promise((r) => wire.socket.once('drain', r));
        sent += 64 * 1024;
        if (sent % (1 << 20) === 0) await sleep(1);
      }
      await wire.waitFor(Type.RstStream, (w) => w[0] === ids.stdin);
    });
    expectSurvived(report);
    expect(wire.control(Type.RstStream)).toContainEqual([3, Rst.FlowControlError]);
    expect(sent).toBeLessThan(64 << 20);
    wire.socket.destroy();
  });

  it('a client that floods PINGs and never reads the replies is dropped', async () => {
    await expectFloodCutOff(world, (url) => SpdyWire.upgrade(url), Buffer.concat(Array.from({ length: 8192 }, (_, i) => words(Type.Ping, 2 * i + 1))), 80 << 20);
  });

  it('an attach client that never reads while the container writes without end (yes) is dropped; the container goes on', async () => {
    const c = await endlessWriterAttachUrl(world);
    let wire!: SpdyWire;
    const report = await attackCri(world, async () => {
      wire = await SpdyWire.upgrade(c.url);
      wire.keepData = false;
      // Streams open as kubectl opens them (no flow control), then no reading at all for 3 s
      // while `yes` runs flat out.
      const ids = await wire.openStreams(['error', 'stdout', 'stderr'], { flowControl: false });
      wire.socket.pause();
      await sleep(3000);
      // Now read everything that was left for us: output, the reason on the error stream, the end.
      wire.keepData = true;
      wire.socket.resume();
      await Promise.race([wire.closed, sleep(15_000)]);
      expect(wire.dataOn(ids.error!).toString()).toMatch(/fell more than 4194304 bytes behind/);
    });
    expectSurvived(report);
    expect(wire.ended).toBeDefined();
    // The container was never held up by the client: it runs, and its log keeps growing.
    const { status } = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
    expect(status?.state).toBe(ContainerState.CONTAINER_RUNNING);
    const before = statSync(status!.logPath).size;
    await sleep(300);
    expect(statSync(status!.logPath).size).toBeGreaterThan(before);
  });
});
