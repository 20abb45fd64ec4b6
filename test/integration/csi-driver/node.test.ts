import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statfsSync, statSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { GrpcStatus } from '../../../lib/errors.js';
import { blockDeviceSize, listLoops, loopsBackedBy } from '../../../lib/loop.js';
import { isMountPoint, mount, mountsAt, readMountInfo, unmount, UmountFlags } from '../../../lib/mount.js';
import { projectQuotaSupport } from '../../../lib/quota.js';
import { NodeServiceCapability_RPC_Type as NodeRpc, VolumeUsage_Unit as Unit, type NodeGetVolumeStatsResponse } from '../../../proto/gen/csi.js';
import { blockCap, MiB, Mode, mountCap, type CsiDriver } from '../../../world/csi.js';
import { Capability, hasCapability } from '../../../lib/capabilities.js';
import { csiSkipReason, expectStatus, useCsiDriver } from '../../../world/csi-suite.js';

// The Node service of berth-csi over real gRPC against the built daemon: real loop devices,
// real ext4/xfs filesystems and bind mounts, checked against /proc/self/mountinfo and
// /sys/block/loop*. Every test undoes what it made in afterEach (unpublish, unstage, delete,
// in that order) even when it failed, and then checks that no mount under the driver's
// directory and no loop device on its files is left.

const reason = csiSkipReason(['ext4', 'xfs']);
if (reason) console.log(`skipping berth-csi node integration tests: ${reason}`);

/** Whether this process (and so the daemon it starts) may grow a mounted ext4. */
const hasSysResource = (): boolean => hasCapability(Capability.sysResource);

let d: CsiDriver;
/** What the running test made, undone last-first after it. */
const undo: (() => unknown)[] = [];
let names = 0;

/** Run the undo steps; a NOT_FOUND means the step's object is already gone, anything else is a leak. */
async function undoAll(): Promise<string[]> {
  const errors: string[] = [];
  while (undo.length) {
    try {
      await undo.pop()!();
    } catch (err) {
      if ((err as ServiceError).code !== GrpcStatus.NOT_FOUND) errors.push((err as Error).message);
    }
  }
  return errors;
}

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(20)) {
    if (condition()) return true;
  }
  return condition();
}

/** CreateVolume a fresh volume (deleted after the test); returns its ID. */
async function createVolume(bytes: number, parameters: Record<string, string> = {}, cap = mountCap()): Promise<string> {
  const { volume } = await d.controller.createVolume({ name: `node-${++names}`, volumeCapabilities: [cap], capacityRange: { requiredBytes: BigInt(bytes) }, parameters });
  const id = volume!.volumeId;
  undo.push(() => d.controller.deleteVolume({ volumeId: id }));
  return id;
}

async function stage(id: string, path: string, cap = mountCap()): Promise<void> {
  undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: path }));
  await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: path, volumeCapability: cap });
}

async function publish(id: string, staging: string, target: string, cap = mountCap(), readonly = false): Promise<void> {
  undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
  await d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: cap, readonly });
}

/** A target path whose parent (the pod's volume dir, which kubelet makes) exists. */
function podTarget(pod: string): string {
  const target = d.path(`pods/${pod}/volume`);
  mkdirSync(dirname(target), { recursive: true });
  return target;
}

/** A volume created, staged and published at a fresh target: the common start of a test. */
async function publishedVolume(bytes = 32 * MiB, parameters: Record<string, string> = {}): Promise<{ id: string; staging: string; target: string }> {
  const id = await createVolume(bytes, parameters);
  const staging = d.path(`staging/${id}`);
  const target = podTarget(id);
  await stage(id, staging);
  await publish(id, staging, target);
  return { id, staging, target };
}

/** The backing file of a filesystem or block volume, as the kernel names loop backing files. */
function imageOf(id: string): string {
  return join(realpathSync(d.root), 'volumes', `${id}.img`);
}

function fsTotalBytes(path: string): number {
  const s = statfsSync(path);
  return s.blocks * s.bsize;
}

/** Write `mib` MiB of data to a new file and flush it. */
function writeMiB(path: string, mib: number): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = Buffer.alloc(MiB, 0x5a);
    for (let i = 0; i < mib; i++) writeSync(fd, chunk);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The errno code `fn` fails with, or undefined when it does not throw. */
function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

function bytesUsage(res: NodeGetVolumeStatsResponse) {
  return res.usage.find((u) => u.unit === Unit.BYTES)!;
}

function inodesUsage(res: NodeGetVolumeStatsResponse) {
  return res.usage.find((u) => u.unit === Unit.INODES)!;
}

const unknownId = 'vol-000000000000-none';

describe.skipIf(reason !== undefined)('berth-csi Node', () => {
  useCsiDriver((x) => (d = x));

  afterEach(async () => {
    const errors = await undoAll();
    expect(errors, 'undoing what the test made').toEqual([]);
    const left = readMountInfo().map((m) => m.mountPoint).filter((p) => p.startsWith(`${d.dir}/`));
    expect(left, 'mounts left under the driver dir').toEqual([]);
    expect(await waitFor(() => loopsBackedBy(d.root).length === 0), `loop devices left: ${JSON.stringify(loopsBackedBy(d.root))}`).toBe(true);
  });

  describe('NodeStageVolume', () => {
    it('NodeStageVolume mounts an ext4 volume\'s loop device at the staging path', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/ext4');
      await stage(id, staging);
      const mounts = mountsAt(staging);
      expect(mounts).toHaveLength(1);
      expect(mounts[0]!.fstype).toBe('ext4');
      expect(mounts[0]!.source).toMatch(/^\/dev\/loop\d+$/);
      const loop = listLoops().find((l) => l.device === mounts[0]!.source);
      expect(loop?.backingFile).toBe(imageOf(id));
      // autoclear: the unmount at NodeUnstage takes the device with it.
      expect(loop?.autoclear).toBe(true);
    });

    it('NodeStageVolume is idempotent: ten identical calls leave one mount and one loop device', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/again');
      for (let i = 0; i < 10; i++) await stage(id, staging);
      expect(mountsAt(staging)).toHaveLength(1);
      expect(loopsBackedBy(d.root).filter((l) => l.backingFile === imageOf(id))).toHaveLength(1);
    });

    it('NodeStageVolume at a second staging path is FAILED_PRECONDITION and mounts nothing there', async () => {
      const id = await createVolume(32 * MiB);
      await stage(id, d.path('staging/first'));
      const second = d.path('staging/second');
      undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: second }));
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: second, volumeCapability: mountCap() }), GrpcStatus.FAILED_PRECONDITION, /volume_id: .*already staged at .*staging\/first/);
      expect(isMountPoint(second)).toBe(false);
    });

    it('NodeStageVolume without volume_id, staging_target_path or volume_capability is INVALID_ARGUMENT naming the field', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/missing');
      await expectStatus(d.node.nodeStageVolume({ stagingTargetPath: staging, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /^volume_id: is required/);
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /^staging_target_path: is required/);
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging }), GrpcStatus.INVALID_ARGUMENT, /^volume_capability: is required/);
      expect(existsSync(staging)).toBe(false);
    });

    it('NodeStageVolume of an unknown volume is NOT_FOUND', async () => {
      await expectStatus(d.node.nodeStageVolume({ volumeId: unknownId, stagingTargetPath: d.path('staging/unknown'), volumeCapability: mountCap() }), GrpcStatus.NOT_FOUND, /volume_id: .*vol-000000000000-none/);
    });

    it('NodeStageVolume with a block capability on a filesystem volume is INVALID_ARGUMENT', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/block-on-fs');
      undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging }));
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: blockCap() }), GrpcStatus.INVALID_ARGUMENT, /volume_capability: .*filesystem volume/);
      expect(loopsBackedBy(d.root)).toEqual([]);
    });

    it('NodeStageVolume refuses a relative or non-normalized staging path with INVALID_ARGUMENT', async () => {
      const id = await createVolume(32 * MiB);
      const cap = mountCap();
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: 'relative/staging', volumeCapability: cap }), GrpcStatus.INVALID_ARGUMENT, /staging_target_path: .*absolute/);
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: `${d.hostDir}/a/../b`, volumeCapability: cap }), GrpcStatus.INVALID_ARGUMENT, /staging_target_path: .*normalized/);
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: `${d.hostDir}//b`, volumeCapability: cap }), GrpcStatus.INVALID_ARGUMENT, /staging_target_path: .*normalized/);
      expect(existsSync(d.path('b'))).toBe(false);
    });

    it('NodeStageVolume refuses a staging path whose parent is a symlink with INVALID_ARGUMENT', async () => {
      const id = await createVolume(32 * MiB);
      const real = d.path('real-parent');
      mkdirSync(real);
      symlinkSync(real, d.path('link-parent'));
      const staging = join(d.path('link-parent'), 'staging');
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /staging_target_path: .*symlink/);
      expect(readdirSync(real)).toEqual([]);
    });

    it('NodeStageVolume applies mount flags: noexec and noatime show in mountinfo', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/flags');
      await stage(id, staging, mountCap(Mode.SINGLE_NODE_WRITER, { mountFlags: ['noexec', 'noatime'] }));
      const [m] = mountsAt(staging);
      expect(m?.mountOptions).toEqual(expect.arrayContaining(['rw', 'noexec', 'noatime']));
    });

    it('a second NodeStageVolume while the first is still growing and mounting an xfs volume is ABORTED', async () => {
      // 300 MiB grown to 400 MiB while unstaged: the first NodeStage mounts, then runs
      // xfs_growfs, holding the volume's lock all along. Both calls go out in the same tick; the
      // driver takes the lock before its first await, so whichever arrives second is refused.
      const id = await createVolume(300 * MiB, { fsType: 'xfs' });
      await d.controller.controllerExpandVolume({ volumeId: id, capacityRange: { requiredBytes: BigInt(400 * MiB) } });
      const staging = d.path('staging/race');
      undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging }));
      const req = { volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() };
      const results = await Promise.allSettled([d.node.nodeStageVolume(req), d.node.nodeStageVolume(req)]);
      const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as ServiceError);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(refused.map((e) => e.code)).toEqual([GrpcStatus.ABORTED]);
      expect(refused[0]!.details).toMatch(new RegExp(`${id} is already in progress`));
      expect(mountsAt(staging).map((m) => m.fstype)).toEqual(['xfs']);
      expect(fsTotalBytes(staging)).toBeGreaterThan(300 * MiB);
    });
  });

  describe('NodePublishVolume', () => {
    it('NodePublishVolume bind-mounts the staged volume at a target it creates', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/pub');
      const target = podTarget('bind');
      await stage(id, staging);
      expect(existsSync(target)).toBe(false);
      await publish(id, staging, target);
      expect(lstatSync(target).isDirectory()).toBe(true);
      const [bound] = mountsAt(target);
      expect(bound?.fstype).toBe('ext4');
      expect(bound?.source).toBe(mountsAt(staging)[0]!.source);
      writeFileSync(join(target, 'hello'), 'from the pod');
      expect(readFileSync(join(staging, 'hello'), 'utf8')).toBe('from the pod');
    });

    it('NodePublishVolume with readonly mounts the target read-only: a write fails with EROFS', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/ro');
      const target = podTarget('ro');
      await stage(id, staging);
      await publish(id, staging, target, mountCap(), true);
      expect(mountsAt(target)[0]?.mountOptions).toContain('ro');
      expect(errnoOf(() => writeFileSync(join(target, 'nope'), 'x'))).toBe('EROFS');
      // Only the pod's view is read-only.
      expect(mountsAt(staging)[0]?.mountOptions).toContain('rw');
    });

    it('NodePublishVolume before NodeStageVolume is FAILED_PRECONDITION', async () => {
      const id = await createVolume(32 * MiB);
      const target = podTarget('unstaged');
      undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
      await expectStatus(
        d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: d.path('staging/never'), targetPath: target, volumeCapability: mountCap() }),
        GrpcStatus.FAILED_PRECONDITION,
        /volume_id: .*must be staged/,
      );
      expect(existsSync(target)).toBe(false);
    });

    it('NodePublishVolume with another staging_target_path than the volume\'s is FAILED_PRECONDITION', async () => {
      const id = await createVolume(32 * MiB);
      await stage(id, d.path('staging/right'));
      const target = podTarget('wrong-staging');
      undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
      await expectStatus(
        d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: d.path('staging/wrong'), targetPath: target, volumeCapability: mountCap() }),
        GrpcStatus.FAILED_PRECONDITION,
        /staging_target_path: .*staged at .*staging\/right/,
      );
    });

    it('NodePublishVolume without target_path is INVALID_ARGUMENT naming it', async () => {
      const id = await createVolume(32 * MiB);
      await expectStatus(d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: d.path('staging/x'), volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /^target_path: is required/);
    });

    it('NodePublishVolume again with the same arguments succeeds; with readonly changed it is ALREADY_EXISTS', async () => {
      const { id, staging, target } = await publishedVolume();
      await publish(id, staging, target);
      expect(mountsAt(target)).toHaveLength(1);
      await expectStatus(
        d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap(), readonly: true }),
        GrpcStatus.ALREADY_EXISTS,
        /target_path: .*other options/,
      );
      expect(mountsAt(target)).toHaveLength(1);
      expect(mountsAt(target)[0]?.mountOptions).toContain('rw');
    });

    it('NodePublishVolume at two targets of a SINGLE_NODE_MULTI_WRITER volume mounts both', async () => {
      const cap = mountCap(Mode.SINGLE_NODE_MULTI_WRITER);
      const id = await createVolume(32 * MiB, {}, cap);
      const staging = d.path('staging/multi');
      const [a, b] = [podTarget('multi-a'), podTarget('multi-b')];
      await stage(id, staging, cap);
      await publish(id, staging, a, cap);
      await publish(id, staging, b, cap);
      writeFileSync(join(a, 'shared'), 'written at a');
      expect(readFileSync(join(b, 'shared'), 'utf8')).toBe('written at a');
    });

    it('NodePublishVolume at a second target of a SINGLE_NODE_SINGLE_WRITER volume is FAILED_PRECONDITION', async () => {
      const cap = mountCap(Mode.SINGLE_NODE_SINGLE_WRITER);
      const id = await createVolume(32 * MiB, {}, cap);
      const staging = d.path('staging/single');
      await stage(id, staging, cap);
      await publish(id, staging, podTarget('single-a'), cap);
      const b = podTarget('single-b');
      undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: b }));
      await expectStatus(
        d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: b, volumeCapability: cap }),
        GrpcStatus.FAILED_PRECONDITION,
        /volume_id: .*SINGLE_NODE_SINGLE_WRITER/,
      );
      expect(existsSync(b)).toBe(false);
    });

    it('NodePublishVolume with SINGLE_NODE_READER_ONLY mounts the target read-only', async () => {
      const cap = mountCap(Mode.SINGLE_NODE_READER_ONLY);
      const id = await createVolume(32 * MiB, {}, cap);
      const staging = d.path('staging/reader');
      const target = podTarget('reader');
      await stage(id, staging, cap);
      await publish(id, staging, target, cap, false);
      expect(mountsAt(target)[0]?.mountOptions).toContain('ro');
      expect(errnoOf(() => writeFileSync(join(target, 'nope'), 'x'))).toBe('EROFS');
    });

    it('NodePublishVolume refuses a target that is a planted symlink and mounts nothing at its destination', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/symlink-target');
      await stage(id, staging);
      const elsewhere = mkdtempSync('/tmp/berth-csi-elsewhere-');
      undo.push(() => rmSync(elsewhere, { recursive: true, force: true }));
      // Were it mounted after all, take it down before removing the directory.
      undo.push(() => unmount(elsewhere, UmountFlags.detach));
      const target = podTarget('symlink');
      symlinkSync(elsewhere, target);
      await expectStatus(d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /target_path: .*symlink/);
      expect(mountsAt(elsewhere)).toEqual([]);
      expect(mountsAt(target)).toEqual([]);
      expect(lstatSync(target).isSymbolicLink()).toBe(true);
      expect(readdirSync(elsewhere)).toEqual([]);
    });
  });

  // A symlink anywhere on the way, also above directories the driver still has to create, is
  // refused naming the field, and one swapped in after the driver opened the path does not
  // redirect the mount: BERTH_CSI_PAUSE_AT (csi-driver/faults.ts) stops the driver between
  // opening the path and mounting on it, so the swap lands there every time.
  describe('symlinks in staging and target paths', () => {
    /** A directory the driver must not touch, and a symlink to it where kubelet's pod directory would be. */
    function plantedPodDir(pod: string): { elsewhere: string; link: string } {
      const elsewhere = d.path(`elsewhere-${pod}`);
      mkdirSync(elsewhere);
      const link = d.path(`pods/${pod}`);
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(elsewhere, link);
      return { elsewhere, link };
    }

    const mountsUnder = (dir: string): string[] => readMountInfo().map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(`${dir}/`));

    /** Restart the driver armed to stop itself at `point`; disarmed again after the test. */
    async function armPause(point: 'stage:after-open' | 'publish:after-open'): Promise<void> {
      undo.push(async () => {
        d.env = {};
        await d.restart();
      });
      d.env = { BERTH_CSI_PAUSE_AT: point };
      await d.restart();
    }

    /** Wait until the driver stopped itself at its pause point (state T in /proc/PID/stat). */
    async function pausedDriver(): Promise<number> {
      const pid = d.pid!;
      expect(await waitFor(() => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] === 'T', 10_000), 'the driver reached its pause point').toBe(true);
      return pid;
    }

    it('NodePublishVolume refuses a target below a symlinked pod directory whose volume directories do not exist yet, and creates nothing behind it', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/missing-ancestor');
      await stage(id, staging);
      const { elsewhere, link } = plantedPodDir('p1');
      const target = join(link, 'volumes/kubernetes.io~csi/pv/mount');
      await expectStatus(d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /^target_path: .*symlink/);
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(mountsUnder(elsewhere)).toEqual([]);
    });

    it('NodeStageVolume refuses a staging path below a symlink above directories that do not exist yet', async () => {
      const id = await createVolume(32 * MiB);
      const { elsewhere, link } = plantedPodDir('p2');
      const staging = join(link, 'plugins/kubernetes.io/csi/hash/globalmount');
      await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /^staging_target_path: .*symlink/);
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(mountsUnder(elsewhere)).toEqual([]);
    });

    it('a block NodePublishVolume below a symlinked directory creates no file behind it', async () => {
      const id = await createVolume(32 * MiB, {}, blockCap());
      const staging = d.path('staging/block-link');
      await stage(id, staging, blockCap());
      const { elsewhere, link } = plantedPodDir('p3');
      await expectStatus(d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: join(link, 'dev/pv'), volumeCapability: blockCap() }), GrpcStatus.INVALID_ARGUMENT, /^target_path: .*symlink/);
      expect(readdirSync(elsewhere)).toEqual([]);
    });

    it('a target swapped for a symlink after the driver opened it: the bind mount still lands on the directory it opened', async () => {
      await armPause('publish:after-open');
      const id = await createVolume(32 * MiB, { type: 'directory', sizeEnforcement: 'unenforced' });
      const staging = d.path('staging/race-publish');
      await stage(id, staging);
      const pod = d.path('pods/race');
      const target = join(pod, 'mount');
      mkdirSync(pod, { recursive: true });
      const elsewhere = d.path('elsewhere-race');
      mkdirSync(elsewhere);
      const publishing = d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() });
      const pid = await pausedDriver();
      // Between the lookup and the mount: the pod directory moves away and a symlink takes its place.
      renameSync(pod, `${pod}-moved`);
      symlinkSync(elsewhere, pod);
      process.kill(pid, 'SIGCONT');
      await publishing;
      expect(mountsUnder(elsewhere)).toEqual([]);
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(mountsAt(`${pod}-moved/mount`)).toHaveLength(1);
      // The pod directory back in place, the publication is undone by its path.
      unlinkSync(pod);
      renameSync(`${pod}-moved`, pod);
      await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
      expect(existsSync(target)).toBe(false);
    });

    it('a staging path swapped for a symlink after the driver opened it: the filesystem is mounted on the directory it opened', async () => {
      await armPause('stage:after-open');
      const id = await createVolume(32 * MiB);
      const parent = d.path('plugins/race');
      const staging = join(parent, 'globalmount');
      mkdirSync(parent, { recursive: true });
      const elsewhere = d.path('elsewhere-stage');
      mkdirSync(elsewhere);
      const staged = d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() });
      const pid = await pausedDriver();
      renameSync(parent, `${parent}-moved`);
      symlinkSync(elsewhere, parent);
      process.kill(pid, 'SIGCONT');
      await staged;
      undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging }));
      expect(mountsUnder(elsewhere)).toEqual([]);
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(mountsAt(`${parent}-moved/globalmount`).map((m) => m.fstype)).toEqual(['ext4']);
      unlinkSync(parent);
      renameSync(`${parent}-moved`, parent);
    });
  });

  describe('volume size', () => {
    it('a 32 MiB ext4 volume refuses a 64 MiB write with ENOSPC', async () => {
      const { target } = await publishedVolume(32 * MiB);
      const fd = openSync(join(target, 'big'), 'w');
      let written = 0;
      let code: string | undefined;
      try {
        const chunk = Buffer.alloc(MiB, 0x5a);
        for (let i = 0; i < 64 && !code; i++) {
          try {
            written += writeSync(fd, chunk);
          } catch (err) {
            code = (err as NodeJS.ErrnoException).code;
          }
        }
      } finally {
        closeSync(fd);
      }
      expect(code).toBe('ENOSPC');
      expect(written).toBeLessThan(32 * MiB);
    });

    it('a directory volume without project quotas reports sizeEnforced false and is bind-mounted from <root>/volumes/<id>', async () => {
      const { volume } = await d.controller.createVolume({
        name: `node-${++names}`,
        volumeCapabilities: [mountCap()],
        capacityRange: { requiredBytes: BigInt(16 * MiB) },
        parameters: { type: 'directory', sizeEnforcement: 'unenforced' },
      });
      const id = volume!.volumeId;
      undo.push(() => d.controller.deleteVolume({ volumeId: id }));
      expect(volume!.volumeContext).toMatchObject({ type: 'directory', sizeEnforced: 'false' });
      const staging = d.path('staging/dir');
      const target = podTarget('dir');
      await stage(id, staging);
      await publish(id, staging, target);
      const source = join(d.root, 'volumes', id);
      // mountinfo's root: the bound directory, as a path inside its own filesystem.
      expect(mountsAt(staging)[0]?.root).toMatch(new RegExp(`/volumes/${id}$`));
      expect(mountsAt(target)[0]?.root).toMatch(new RegExp(`/volumes/${id}$`));
      writeMiB(join(target, 'data'), 2);
      expect(statSync(join(source, 'data')).size).toBe(2 * MiB);
      const stats = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target });
      expect(bytesUsage(stats).total).toBe(BigInt(16 * MiB));
      expect(bytesUsage(stats).used).toBeGreaterThanOrEqual(BigInt(2 * MiB));
    });

    it('a directory volume with a project quota refuses writes beyond its size', async (ctx) => {
      const quota = projectQuotaSupport(join(d.root, 'volumes'));
      if (!quota) {
        const why = `the filesystem of ${d.root} enforces no project quotas (it needs a prjquota mount on a kernel with quota support)`;
        console.log(`skipping "a directory volume with a project quota refuses writes beyond its size": ${why}`);
        ctx.skip(why);
      }
      const id = await createVolume(8 * MiB, { type: 'directory' });
      const staging = d.path('staging/quota');
      const target = podTarget('quota');
      await stage(id, staging);
      await publish(id, staging, target);
      expect(['EDQUOT', 'ENOSPC']).toContain(errnoOf(() => writeMiB(join(target, 'big'), 16)));
    });
  });

  describe('NodeUnpublishVolume', () => {
    it('NodeUnpublishVolume unmounts and removes the target it created, and succeeds again', async () => {
      const { id, target } = await publishedVolume();
      await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
      expect(mountsAt(target)).toEqual([]);
      expect(existsSync(target)).toBe(false);
      await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    });

    it('NodeUnpublishVolume of an unknown volume is NOT_FOUND', async () => {
      await expectStatus(d.node.nodeUnpublishVolume({ volumeId: unknownId, targetPath: podTarget('unknown') }), GrpcStatus.NOT_FOUND, /volume_id: .*does not exist/);
    });

    it('NodeUnpublishVolume at a target never published for the volume succeeds and leaves it untouched', async () => {
      const { id } = await publishedVolume();
      const other = podTarget('not-ours');
      mkdirSync(other);
      mount('tmpfs', other, 'tmpfs', 0, 'size=1m');
      undo.push(() => unmount(other, 0));
      writeFileSync(join(other, 'keep'), 'someone else\'s');
      await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: other });
      expect(mountsAt(other).map((m) => m.fstype)).toEqual(['tmpfs']);
      expect(readFileSync(join(other, 'keep'), 'utf8')).toBe('someone else\'s');
    });

    it('NodeUnpublishVolume without volume_id or target_path is INVALID_ARGUMENT naming the field', async () => {
      await expectStatus(d.node.nodeUnpublishVolume({ targetPath: podTarget('x') }), GrpcStatus.INVALID_ARGUMENT, /^volume_id: is required/);
      await expectStatus(d.node.nodeUnpublishVolume({ volumeId: unknownId }), GrpcStatus.INVALID_ARGUMENT, /^target_path: is required/);
    });
  });

  describe('NodeUnstageVolume', () => {
    it('NodeUnstageVolume unmounts the staging path, its loop device detaches, and it succeeds again', async () => {
      const id = await createVolume(32 * MiB);
      const staging = d.path('staging/unstage');
      await stage(id, staging);
      const device = mountsAt(staging)[0]!.source;
      await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
      expect(mountsAt(staging)).toEqual([]);
      expect(await waitFor(() => !listLoops().some((l) => l.device === device && l.backingFile === imageOf(id)))).toBe(true);
      expect(existsSync(`/sys/block/${device.slice('/dev/'.length)}/loop`)).toBe(false);
      await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
    });

    it('NodeUnstageVolume while the volume is still published is FAILED_PRECONDITION', async () => {
      const { id, staging, target } = await publishedVolume();
      await expectStatus(d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging }), GrpcStatus.FAILED_PRECONDITION, new RegExp(`volume_id: .*still published at ${target}`));
      expect(mountsAt(staging)).toHaveLength(1);
      expect(mountsAt(target)).toHaveLength(1);
    });

    it('NodeUnstageVolume of an unknown volume is NOT_FOUND', async () => {
      await expectStatus(d.node.nodeUnstageVolume({ volumeId: unknownId, stagingTargetPath: d.path('staging/unknown') }), GrpcStatus.NOT_FOUND, /volume_id/);
    });
  });

  describe('NodeGetVolumeStats', () => {
    it('NodeGetVolumeStats reports the filesystem\'s bytes and inodes, and used bytes grow after an 8 MiB write', async () => {
      // 512 MiB: ext4's own metadata (journal, inode tables) stays under 10% from this size on.
      const size = 512 * MiB;
      const { id, staging, target } = await publishedVolume(size);
      const before = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target });
      expect(before.volumeCondition).toEqual({ abnormal: false, message: expect.any(String) });
      const bytes = bytesUsage(before);
      expect(Number(bytes.total)).toBeLessThanOrEqual(size);
      expect(Number(bytes.total)).toBeGreaterThanOrEqual(size * 0.9);
      expect(bytes.used + bytes.available).toBeLessThanOrEqual(bytes.total);
      const inodes = inodesUsage(before);
      expect(inodes.total).toBeGreaterThan(0n);
      expect(inodes.used).toBeGreaterThan(0n);

      writeMiB(join(target, 'eight'), 8);
      const after = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target });
      expect(bytesUsage(after).used - bytes.used).toBeGreaterThanOrEqual(BigInt(8 * MiB));
      expect(inodesUsage(after).used).toBe(inodes.used + 1n);
      // The staging path is the same filesystem.
      expect(bytesUsage(await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: staging })).total).toBe(bytes.total);
    });

    it('NodeGetVolumeStats of an unknown volume is NOT_FOUND', async () => {
      await expectStatus(d.node.nodeGetVolumeStats({ volumeId: unknownId, volumePath: d.path('x') }), GrpcStatus.NOT_FOUND, /volume_id/);
    });

    it('NodeGetVolumeStats at a path where the volume is not published is NOT_FOUND', async () => {
      const { id } = await publishedVolume();
      const elsewhere = d.path('elsewhere');
      mkdirSync(elsewhere);
      await expectStatus(d.node.nodeGetVolumeStats({ volumeId: id, volumePath: 'some/path' }), GrpcStatus.NOT_FOUND, /volume_path/);
      await expectStatus(d.node.nodeGetVolumeStats({ volumeId: id, volumePath: elsewhere }), GrpcStatus.NOT_FOUND, /volume_path/);
    });

    it('NodeGetVolumeStats without volume_id or volume_path is INVALID_ARGUMENT naming the field', async () => {
      await expectStatus(d.node.nodeGetVolumeStats({ volumePath: d.path('x') }), GrpcStatus.INVALID_ARGUMENT, /^volume_id: is required/);
      await expectStatus(d.node.nodeGetVolumeStats({ volumeId: unknownId }), GrpcStatus.INVALID_ARGUMENT, /^volume_path: is required/);
    });

    it('NodeGetVolumeStats reports an abnormal condition once the backing file was deleted by hand', async () => {
      const { id, target } = await publishedVolume();
      rmSync(imageOf(id));
      const stats = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target });
      expect(stats.volumeCondition?.abnormal).toBe(true);
      expect(stats.volumeCondition?.message).toMatch(new RegExp(`${id}\\.img .*gone`));
    });

    it('NodeGetVolumeStats reports an abnormal condition once the target was unmounted behind the driver\'s back', async () => {
      const { id, staging, target } = await publishedVolume();
      unmount(target, 0);
      const stats = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target });
      expect(stats.volumeCondition?.abnormal).toBe(true);
      expect(stats.volumeCondition?.message).toMatch(/no longer mounted/);
      expect(stats.volumeCondition?.message).toContain(target);
      // The staging mount is still fine.
      expect((await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: staging })).volumeCondition?.abnormal).toBe(false);
    });
  });

  describe('NodeExpandVolume', () => {
    it('NodeExpandVolume of a published ext4 volume grows it online with CAP_SYS_RESOURCE, else is FAILED_PRECONDITION and it grows at the next NodeStage', async () => {
      const { id, staging, target } = await publishedVolume(32 * MiB);
      writeFileSync(join(target, 'keep'), 'data');
      const before = fsTotalBytes(target);
      const grown = await d.controller.controllerExpandVolume({ volumeId: id, capacityRange: { requiredBytes: BigInt(64 * MiB) } });
      expect(grown.nodeExpansionRequired).toBe(true);
      const expand = d.node.nodeExpandVolume({ volumeId: id, volumePath: target, capacityRange: { requiredBytes: BigInt(64 * MiB) } });
      if (hasSysResource()) {
        expect((await expand).capacityBytes).toBe(BigInt(64 * MiB));
      } else {
        console.log('ext4 expansion: no CAP_SYS_RESOURCE here; expecting FAILED_PRECONDITION, then the offline grow at NodeStage');
        await expectStatus(expand, GrpcStatus.FAILED_PRECONDITION, /CAP_SYS_RESOURCE/);
        expect(fsTotalBytes(target)).toBe(before);
        await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
        await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
        await stage(id, staging);
        await publish(id, staging, target);
      }
      expect(fsTotalBytes(target)).toBeGreaterThan(32 * MiB);
      expect(fsTotalBytes(target)).toBeLessThanOrEqual(64 * MiB);
      expect(readFileSync(join(target, 'keep'), 'utf8')).toBe('data');
    });

    it('NodeExpandVolume grows a published xfs volume online: the loop device and the filesystem follow', async () => {
      const { id, staging, target } = await publishedVolume(300 * MiB, { fsType: 'xfs' });
      const device = mountsAt(staging)[0]!.source;
      expect(mountsAt(staging)[0]!.fstype).toBe('xfs');
      expect(blockDeviceSize(device)).toBe(300 * MiB);
      const before = fsTotalBytes(target);
      await d.controller.controllerExpandVolume({ volumeId: id, capacityRange: { requiredBytes: BigInt(400 * MiB) } });
      // The node half has not run yet: the device still has its old size.
      expect(blockDeviceSize(device)).toBe(300 * MiB);
      const res = await d.node.nodeExpandVolume({ volumeId: id, volumePath: target, capacityRange: { requiredBytes: BigInt(400 * MiB) } });
      expect(res.capacityBytes).toBe(BigInt(400 * MiB));
      expect(blockDeviceSize(device)).toBe(400 * MiB);
      expect(fsTotalBytes(target) - before).toBeGreaterThanOrEqual(90 * MiB);
      expect(fsTotalBytes(target)).toBeLessThanOrEqual(400 * MiB);
      // Again: nothing left to grow, still fine.
      await d.node.nodeExpandVolume({ volumeId: id, volumePath: target });
    });

    it('NodeExpandVolume of a block volume makes its loop device follow the grown file', async () => {
      const id = await createVolume(8 * MiB, {}, blockCap());
      const staging = d.path('staging/block-expand');
      const target = podTarget('block-expand');
      await stage(id, staging, blockCap());
      await publish(id, staging, target, blockCap());
      const device = listLoops().find((l) => l.backingFile === imageOf(id))!.device;
      const grown = await d.controller.controllerExpandVolume({ volumeId: id, capacityRange: { requiredBytes: BigInt(16 * MiB) } });
      expect(grown.nodeExpansionRequired).toBe(true);
      expect(blockDeviceSize(device)).toBe(8 * MiB);
      await d.node.nodeExpandVolume({ volumeId: id, volumePath: target });
      expect(blockDeviceSize(device)).toBe(16 * MiB);
      expect(bytesUsage(await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target })).total).toBe(BigInt(16 * MiB));
    });

    it('NodeExpandVolume rejects a path it did not publish (NOT_FOUND) and a size above the controller\'s (OUT_OF_RANGE)', async () => {
      const { id, target } = await publishedVolume(32 * MiB);
      await expectStatus(d.node.nodeExpandVolume({ volumeId: id, volumePath: d.path('elsewhere') }), GrpcStatus.NOT_FOUND, /volume_path/);
      await expectStatus(d.node.nodeExpandVolume({ volumeId: id, volumePath: target, capacityRange: { requiredBytes: BigInt(64 * MiB) } }), GrpcStatus.OUT_OF_RANGE, /capacity_range.required_bytes/);
      await expectStatus(d.node.nodeExpandVolume({ volumePath: target }), GrpcStatus.INVALID_ARGUMENT, /^volume_id: is required/);
      await expectStatus(d.node.nodeExpandVolume({ volumeId: id }), GrpcStatus.INVALID_ARGUMENT, /^volume_path: is required/);
    });
  });

  describe('NodeGetCapabilities and NodeGetInfo', () => {
    let limited: CsiDriver;
    useCsiDriver((x) => (limited = x), { args: ['--max-volumes-per-node', '12'] });

    it('NodeGetCapabilities advertises exactly stage/unstage, stats, expand, condition, multi-writer and mount group', async () => {
      const { capabilities } = await d.node.nodeGetCapabilities();
      expect(capabilities.map((c) => c.rpc?.type).sort()).toEqual(
        [
          NodeRpc.STAGE_UNSTAGE_VOLUME,
          NodeRpc.GET_VOLUME_STATS,
          NodeRpc.EXPAND_VOLUME,
          NodeRpc.VOLUME_CONDITION,
          NodeRpc.SINGLE_NODE_MULTI_WRITER,
          NodeRpc.VOLUME_MOUNT_GROUP,
        ].sort(),
      );
    });

    it('NodeGetInfo names node-a with its topology segment and no volume limit', async () => {
      const info = await d.node.nodeGetInfo();
      expect(info.nodeId).toBe('node-a');
      expect(info.accessibleTopology?.segments).toEqual({ 'topology.local.csi.berth.io/node': 'node-a' });
      expect(info.maxVolumesPerNode).toBe(0n);
    });

    it('NodeGetInfo reports max_volumes_per_node from --max-volumes-per-node 12', async () => {
      const info = await limited.node.nodeGetInfo();
      expect(info.maxVolumesPerNode).toBe(12n);
      expect(info.nodeId).toBe('node-a');
    });
  });
});
