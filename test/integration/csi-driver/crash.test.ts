import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loopsBackedBy } from '../../../lib/loop.js';
import { isMountPoint } from '../../../lib/mount.js';
import { blockCap, MiB, mountCap, type CsiDriver } from '../../../world/csi.js';
import { useCsiDriver } from '../../../world/csi-suite.js';
import { isRoot } from '../../../world/netns.js';

// kill -9 at every step of an RPC that matters (csi-driver/faults.ts names the points), then a
// restart: no mount, loop device or file may leak, no volume may be lost, and every RPC works.

describe.runIf(isRoot)('berth-csi survives kill -9 in the middle of an operation', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x));
  let seq = 0;

  /** Run `op` with the driver armed to kill itself at `point`; the call must fail; restart clean. */
  async function crashAt(point: string, op: () => Promise<unknown>): Promise<void> {
    d.env = { BERTH_CSI_CRASH_AT: point };
    await d.restart();
    await expect(op()).rejects.toThrow();
    d.env = {};
    await d.restart();
    expect(d.log()).toMatch(/state recovered/);
  }

  const loopsOf = (volumeId: string): string[] => loopsBackedBy(d.root).filter((l) => l.backingFile.includes(volumeId)).map((l) => l.device);

  async function createFs(type: 'filesystem' | 'block' = 'filesystem'): Promise<string> {
    const cap = type === 'block' ? blockCap() : mountCap();
    const { volume } = await d.controller.createVolume({ name: `crash-${++seq}`, volumeCapabilities: [cap], capacityRange: { requiredBytes: BigInt(32 * MiB) } });
    return volume!.volumeId;
  }

  async function cleanup(id: string, staging: string, target?: string): Promise<void> {
    if (target) await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
    await d.controller.deleteVolume({ volumeId: id });
    expect(loopsOf(id)).toEqual([]);
    expect(existsSync(join(d.root, 'volumes', `${id}.img`))).toBe(false);
  }

  it('killed after the bytes of a new volume exist but before its record: the bytes are removed, the name is free', async () => {
    await crashAt('create:after-backing', () => d.controller.createVolume({ name: 'crash-create', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: BigInt(32 * MiB) } }));
    expect(readdirSync(join(d.root, 'volumes'))).toEqual([]);
    expect((await d.controller.listVolumes()).entries).toEqual([]);
    const { volume } = await d.controller.createVolume({ name: 'crash-create', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: BigInt(32 * MiB) } });
    await d.controller.deleteVolume({ volumeId: volume!.volumeId });
  });

  it('killed after a delete forgot the volume: the leftover bytes are removed at start', async () => {
    const id = await createFs();
    await crashAt('delete:after-forget', () => d.controller.deleteVolume({ volumeId: id }));
    expect(existsSync(join(d.root, 'volumes', `${id}.img`))).toBe(false);
    await d.controller.deleteVolume({ volumeId: id });
  });

  for (const point of ['stage:after-intent', 'stage:after-mount'] as const) {
    it(`killed at ${point} (filesystem): no mount, no loop device after restart; staging again works`, async () => {
      const id = await createFs();
      const staging = d.path(`stage-${seq}`);
      await crashAt(point, () => d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() }));
      expect(isMountPoint(staging)).toBe(false);
      // The autoclear loop device goes with the unmount; give udev-less sysfs a moment.
      for (let i = 0; i < 40 && loopsOf(id).length; i++) await new Promise((r) => setTimeout(r, 50));
      expect(loopsOf(id)).toEqual([]);
      await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() });
      expect(isMountPoint(staging)).toBe(true);
      await cleanup(id, staging);
    });
  }

  it('killed after a block volume was attached but before the record said so: the loop device is detached', async () => {
    const id = await createFs('block');
    const staging = d.path(`stage-${seq}`);
    await crashAt('stage:after-mount', () => d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: blockCap() }));
    expect(loopsOf(id)).toEqual([]);
    expect(d.log()).toMatch(/detached a loop device no volume records|"rolledBack":[1-9]/);
    await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: blockCap() });
    expect(loopsOf(id)).toHaveLength(1);
    await cleanup(id, staging);
  });

  for (const point of ['publish:after-intent', 'publish:after-mount'] as const) {
    it(`killed at ${point}: the target is unmounted and removed, the staging stays; publishing again works`, async () => {
      const id = await createFs();
      const staging = d.path(`stage-${seq}`);
      const target = d.path(`pod-${seq}/volume`);
      await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() });
      await crashAt(point, () => d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() }));
      expect(isMountPoint(target)).toBe(false);
      expect(existsSync(target)).toBe(false);
      expect(isMountPoint(staging)).toBe(true);
      await d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() });
      expect(isMountPoint(target)).toBe(true);
      await cleanup(id, staging, target);
    });
  }

  it('killed after unmounting a target but before recording it: the publication is forgotten, unstage works', async () => {
    const id = await createFs();
    const staging = d.path(`stage-${seq}`);
    const target = d.path(`pod-${seq}/volume`);
    await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() });
    await d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() });
    await crashAt('unpublish:after-unmount', () => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
    await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    expect(existsSync(target)).toBe(false);
    await cleanup(id, staging);
  });

  it('killed after copying a snapshot but before recording it: the copy is removed, the snapshot can be taken again', async () => {
    const id = await createFs();
    await crashAt('snapshot:after-copy', () => d.controller.createSnapshot({ name: 'crash-snap', sourceVolumeId: id }));
    expect(readdirSync(join(d.root, 'snapshots'))).toEqual([]);
    const { snapshot } = await d.controller.createSnapshot({ name: 'crash-snap', sourceVolumeId: id });
    expect(snapshot!.readyToUse).toBe(true);
    await d.controller.deleteSnapshot({ snapshotId: snapshot!.snapshotId });
    await d.controller.deleteVolume({ volumeId: id });
  });

  it('a plain kill -9 with volumes staged and published loses nothing: stats, unpublish, unstage, delete all work after restart', async () => {
    const ids = [await createFs(), await createFs(), await createFs('block')];
    const places = ids.map((id, i) => ({ id, staging: d.path(`keep-stage-${i}`), target: d.path(`keep-pod-${i}/v`), cap: i === 2 ? blockCap() : mountCap() }));
    for (const p of places) {
      await d.node.nodeStageVolume({ volumeId: p.id, stagingTargetPath: p.staging, volumeCapability: p.cap });
      await d.node.nodePublishVolume({ volumeId: p.id, stagingTargetPath: p.staging, targetPath: p.target, volumeCapability: p.cap });
    }
    await d.restart('SIGKILL');
    expect(d.log()).toMatch(/"volumes":3/);
    for (const p of places) {
      const stats = await d.node.nodeGetVolumeStats({ volumeId: p.id, volumePath: p.target });
      expect(stats.volumeCondition?.abnormal).toBe(false);
      expect(stats.usage[0]!.total).toBeGreaterThan(0n);
    }
    for (const p of places) await cleanup(p.id, p.staging, p.target);
    expect(loopsBackedBy(d.root)).toEqual([]);
  });
});
