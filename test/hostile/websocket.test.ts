import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ContainerState } from '../../proto/gen/runtime/v1/api.js';
import type { CriWorld } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';
import { frame, Op } from '../unit/lib/stream/websocket-fixtures.js';
import { attackCri, busybox, endlessWriterAttachUrl, execUrl, expectFloodCutOff, expectSurvived } from './stream-attack.js';
import { WsWire } from './websocket-wire.js';

// Hostile WebSocket clients against berth-cri's streaming server (exec and attach over
// v5.channel.k8s.io), frames written by hand: berth-cri stays alive, bounded and responsive,
// and the client gets the close code RFC 6455 gives for what it did.

describe.skipIf(!isRoot)('hostile WebSocket clients', () => {
  let world!: CriWorld;
  useCriWorld(['busybox'], (w) => (world = w));

  it('a frame announcing a terabyte is refused from its header with 1009; so is a 5 MiB message sent whole', async () => {
    const c = await busybox(world);
    let huge!: WsWire;
    let big!: WsWire;
    const report = await attackCri(world, async () => {
      huge = await WsWire.upgrade(await execUrl(world, c.id, ['sleep', '30'], { stdin: true }));
      // Binary, 64-bit length 2^40, masked; then payload for as long as the server reads.
      huge.socket.write(Buffer.from([0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4]));
      const junk = Buffer.alloc(1 << 20);
      for (let i = 0; i < 64 && !huge.close && !huge.ended; i++) {
        if (!huge.socket.write(junk)) await Promise.race([new Promise((r) => huge.socket.once('drain', r)), huge.closed]);
      }
      await huge.closeOrEnd();
      big = await WsWire.upgrade(await execUrl(world, c.id, ['sleep', '30'], { stdin: true }));
      big.socket.write(frame(Op.Binary, Buffer.concat([Buffer.from([0]), Buffer.alloc(5 << 20)])));
      await big.closeOrEnd();
    });
    expectSurvived(report);
    expect(huge.close?.code).toBe(1009);
    expect(big.close?.code).toBe(1009);
  });

  it('endless fragments of a message are refused with 1009, empty ones too', async () => {
    const c = await busybox(world);
    let wire!: WsWire;
    let sent = 0;
    const report = await attackCri(world, async () => {
      wire = await WsWire.upgrade(await execUrl(world, c.id, ['sleep', '30'], { stdin: true }));
      wire.socket.write(frame(Op.Binary, Buffer.from([0]), { fin: false }));
      const fragments = Buffer.concat(Array.from({ length: 1000 }, (_, i) => frame(Op.Continuation, Buffer.alloc(i % 2), { fin: false })));
      while (!wire.close && !wire.ended && sent < 1_000_000) {
        if (!wire.socket.write(fragments)) await Promise.race([new Promise((r) => wire.socket.once('drain', r)), wire.closed]);
        sent += 1000;
        await sleep(1);
      }
      await wire.closeOrEnd();
    });
    expectSurvived(report);
    expect(wire.close?.code).toBe(1009);
    expect(wire.close?.reason).toMatch(/fragments/);
    expect(sent).toBeLessThan(1_000_000);
  });

  it('a client that floods pings and never reads the pongs is dropped', async () => {
    await expectFloodCutOff(world, (url) => WsWire.upgrade(url), Buffer.concat(Array.from({ length: 4096 }, () => frame(Op.Ping, 'are you there'))), 100 << 20);
  });

  it('an attach client that never reads while the container writes without end (yes) is dropped; the container goes on', async () => {
    const c = await endlessWriterAttachUrl(world);
    let wire!: WsWire;
    const report = await attackCri(world, async () => {
      wire = await WsWire.upgrade(c.url);
      wire.socket.pause();
      await sleep(3000);
      wire.socket.resume();
      await wire.closeOrEnd(20_000);
    });
    expectSurvived(report);
    expect(wire.status).toMatch(/fell more than 4194304 bytes behind/);
    expect(wire.bytesOn.get(1)).toBeGreaterThan(4 << 20);
    const { status } = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
    expect(status?.state).toBe(ContainerState.CONTAINER_RUNNING);
  });
});
