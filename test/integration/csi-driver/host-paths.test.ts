import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { GrpcStatus } from '../../../lib/errors.js';
import { mountsAt, readMountInfo } from '../../../lib/mount.js';
import { blockCap, MiB, mountCap, type CsiDriver } from '../../../world/csi.js';
import { csiSkipReason, expectStatus, useCsiDriver } from '../../../world/csi-suite.js';

// Staging and target paths with symlinks in them, against the built berth-csi: a symlink
// anywhere on the way (also above directories the driver still has to create) is refused with
// INVALID_ARGUMENT naming the field, and a symlink swapped in after the driver opened the path
// does not redirect the mount. The swap is made deterministic by BERTH_CSI_PAUSE_AT
// (csi-driver/faults.ts): the driver stops itself between opening the path and mounting on it.

const reason = csiSkipReason(['ext4']);
if (reason) console.log(`skipping berth-csi host path tests: ${reason}`);

let d: CsiDriver;
const undo: (() => unknown)[] = [];
let seq = 0;

async function createVolume(parameters: Record<string, string> = {}, cap = mountCap()): Promise<string> {
  const { volume } = await d.controller.createVolume({ name: `paths-${++seq}`, volumeCapabilities: [cap], capacityRange: { requiredBytes: BigInt(32 * MiB) }, parameters });
  const id = volume!.volumeId;
  undo.push(() => d.controller.deleteVolume({ volumeId: id }));
  return id;
}

async function stage(id: string, path: string, cap = mountCap()): Promise<void> {
  undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: path }));
  await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: path, volumeCapability: cap });
}

/** A directory outside anything the driver should touch, and a symlink to it where kubelet's pod directory would be. */
function plantedPodDir(pod: string): { elsewhere: string; link: string } {
  const elsewhere = d.path(`elsewhere-${pod}`);
  mkdirSync(elsewhere);
  const link = d.path(`pods/${pod}`);
  mkdirSync(dirname(link), { recursive: true });
  symlinkSync(elsewhere, link);
  return { elsewhere, link };
}

/** berth-csi's pid, found by its socket on the command line. */
function driverPid(): number {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(d.socket)) return Number(pid);
    } catch { /* gone */ }
  }
  throw new Error('berth-csi is not running');
}

/** Wait until the driver has stopped itself at its pause point (state T in /proc/PID/stat). */
async function pausedDriver(): Promise<number> {
  const pid = driverPid();
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(10)) {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    if (state === 'T') return pid;
  }
  throw new Error('berth-csi did not reach its pause point');
}

const mountsUnder = (dir: string): string[] => readMountInfo().map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(`${dir}/`));

describe.skipIf(reason !== undefined)('berth-csi staging and target paths with symlinks', () => {
  useCsiDriver((x) => (d = x));

  afterEach(async () => {
    const errors: string[] = [];
    while (undo.length) {
      try {
        await undo.pop()!();
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    if (d.env.BERTH_CSI_PAUSE_AT) {
      d.env = {};
      await d.restart();
    }
    expect(errors, 'undoing what the test made').toEqual([]);
    expect(mountsUnder(d.dir), 'mounts left under the driver dir').toEqual([]);
  });

  it('NodePublishVolume refuses a target below a symlinked pod directory whose volume directories do not exist yet, and creates nothing behind it', async () => {
    const id = await createVolume();
    const staging = d.path('staging/missing-ancestor');
    await stage(id, staging);
    const { elsewhere, link } = plantedPodDir('p1');
    const target = join(link, 'volumes/kubernetes.io~csi/pv/mount');
    await expectStatus(d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /^target_path: .*symlink/);
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(mountsUnder(elsewhere)).toEqual([]);
  });

  it('NodeStageVolume refuses a staging path below a symlink above directories that do not exist yet', async () => {
    const id = await createVolume();
    const { elsewhere, link } = plantedPodDir('p2');
    const staging = join(link, 'plugins/kubernetes.io/csi/hash/globalmount');
    await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /^staging_target_path: .*symlink/);
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(mountsUnder(elsewhere)).toEqual([]);
  });

  it('a block NodePublishVolume below a symlinked directory creates no file behind it', async () => {
    const id = await createVolume({}, blockCap());
    const staging = d.path('staging/block');
    await stage(id, staging, blockCap());
    const { elsewhere, link } = plantedPodDir('p3');
    await expectStatus(d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: join(link, 'dev/pv'), volumeCapability: blockCap() }), GrpcStatus.INVALID_ARGUMENT, /^target_path: .*symlink/);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('a target swapped for a symlink after the driver opened it: the bind mount still lands on the directory it opened', async () => {
    d.env = { BERTH_CSI_PAUSE_AT: 'publish:after-open' };
    await d.restart();
    const id = await createVolume({ type: 'directory', sizeEnforcement: 'unenforced' });
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
    // Put the pod directory back so the publication can be undone by its path.
    unlinkSync(pod);
    renameSync(`${pod}-moved`, pod);
    await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    expect(existsSync(target)).toBe(false);
  });

  it('a staging path swapped for a symlink after the driver opened it: the filesystem is mounted on the directory it opened', async () => {
    d.env = { BERTH_CSI_PAUSE_AT: 'stage:after-open' };
    await d.restart();
    const id = await createVolume();
    const parent = d.path('plugins/race');
    const staging = join(parent, 'globalmount');
    mkdirSync(parent, { recursive: true });
    const elsewhere = d.path('elsewhere-stage');
    mkdirSync(elsewhere);
    const staging$ = d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() });
    const pid = await pausedDriver();
    renameSync(parent, `${parent}-moved`);
    symlinkSync(elsewhere, parent);
    process.kill(pid, 'SIGCONT');
    await staging$;
    expect(mountsUnder(elsewhere)).toEqual([]);
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(mountsAt(`${parent}-moved/globalmount`).map((m) => m.fstype)).toEqual(['ext4']);
    unlinkSync(parent);
    renameSync(`${parent}-moved`, parent);
    await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
    rmSync(parent, { recursive: true, force: true });
  });
});
