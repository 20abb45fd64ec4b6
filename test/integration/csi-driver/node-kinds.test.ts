import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmSync, statfsSync, statSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { GrpcStatus } from '../../../lib/errors.js';
import { callUnary, unixClient } from '../../../lib/grpc/unix-socket.js';
import { detachLoop, listLoops, loopsBackedBy } from '../../../lib/loop.js';
import { mountsAt, readMountInfo } from '../../../lib/mount.js';
import { projectQuotaSupport } from '../../../lib/quota.js';
import { VolumeUsage_Unit as Unit } from '../../../proto/gen/csi.js';
import { RegistrationClient, type InfoRequest, type PluginInfo, type RegistrationStatus, type RegistrationStatusResponse } from '../../../proto/gen/kubelet/pluginregistration/v1/api.js';
import { blockCap, MiB, Mode, mountCap, releaseUnder, type CsiDriver, type CsiDriverOptions } from '../../../world/csi.js';
import { csiSkipReason, expectStatus, useCsiDriver } from '../../../world/csi-suite.js';
import { isRoot } from '../../../world/netns.js';

// The kinds of volume berth-csi's Node service serves besides CreateVolume'd filesystems:
// inline ephemeral volumes, static local PVs (a directory or disk named in the volume context),
// raw block volumes, volumes whose group the driver sets (VOLUME_MOUNT_GROUP), and kubelet's
// plugin registration. Real loop devices and mounts; each test undoes what it made in afterEach
// (also when it failed) and then checks no mount or loop device of its driver is left.

const reason = csiSkipReason(['ext4']);
if (reason) console.log(`skipping berth-csi volume kind integration tests: ${reason}`);

const testBase = '/var/lib/berth-test';
const ephemeralKey = 'csi.storage.k8s.io/ephemeral';

/** What the running test made, undone last-first after it. */
const undo: (() => unknown)[] = [];
let names = 0;

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(20)) {
    if (condition()) return true;
  }
  return condition();
}

/**
 * After each test of a describe: undo what it made (a NOT_FOUND means already gone), then check
 * that nothing stays mounted under the driver's directory (or `extraDirs`) and no loop device
 * is left on files there.
 */
function useCleanup(driver: () => CsiDriver, extraDirs: () => string[] = () => []): void {
  afterEach(async () => {
    const errors: string[] = [];
    while (undo.length) {
      try {
        await undo.pop()!();
      } catch (err) {
        if ((err as ServiceError).code !== GrpcStatus.NOT_FOUND) errors.push((err as Error).message);
      }
    }
    expect(errors, 'undoing what the test made').toEqual([]);
    const dirs = [driver().dir, ...extraDirs()];
    const left = readMountInfo().map((m) => m.mountPoint).filter((p) => dirs.some((dir) => p.startsWith(`${dir}/`)));
    expect(left, 'mounts left behind').toEqual([]);
    const loops = (): unknown[] => dirs.flatMap((dir) => loopsBackedBy(dir));
    expect(await waitFor(() => loops().length === 0), `loop devices left: ${JSON.stringify(loops())}`).toBe(true);
  });
}

async function createVolume(d: CsiDriver, bytes: number, parameters: Record<string, string> = {}, cap = mountCap()): Promise<string> {
  const { volume } = await d.controller.createVolume({ name: `kinds-${++names}`, volumeCapabilities: [cap], capacityRange: { requiredBytes: BigInt(bytes) }, parameters });
  const id = volume!.volumeId;
  undo.push(() => d.controller.deleteVolume({ volumeId: id }));
  return id;
}

async function stage(d: CsiDriver, id: string, path: string, cap = mountCap(), volumeContext: Record<string, string> = {}): Promise<void> {
  undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: path }));
  await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: path, volumeCapability: cap, volumeContext });
}

async function publish(d: CsiDriver, id: string, staging: string, target: string, cap = mountCap(), readonly = false): Promise<void> {
  undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
  await d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: cap, readonly });
}

/** Publish an inline ephemeral volume (no staging path, as kubelet does for them). */
async function publishEphemeral(d: CsiDriver, id: string, target: string, context: Record<string, string>, cap = mountCap()): Promise<void> {
  undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
  await d.node.nodePublishVolume({ volumeId: id, targetPath: target, volumeCapability: cap, volumeContext: { [ephemeralKey]: 'true', ...context } });
}

/** A target path whose parent (the pod's volume dir, which kubelet makes) exists. */
function podTarget(d: CsiDriver, pod: string): string {
  const target = d.path(`pods/${pod}/volume`);
  mkdirSync(dirname(target), { recursive: true });
  return target;
}

/** An ID as kubelet makes them for inline volumes: csi-<sha256 hex>. */
function inlineId(): string {
  return `csi-${randomBytes(32).toString('hex')}`;
}

function imageOf(d: CsiDriver, id: string): string {
  return join(realpathSync(d.root), 'volumes', `${id}.img`);
}

function fsTotalBytes(path: string): number {
  const s = statfsSync(path);
  return s.blocks * s.bsize;
}

/** Make a directory for a describe's own files; removed (after unmounting anything in it) at its end. */
function useTestDir(prefix: string, set: (dir: string) => void): void {
  let dir: string | undefined;
  beforeAll(() => {
    mkdirSync(testBase, { recursive: true });
    dir = mkdtempSync(join(testBase, prefix));
    set(dir);
  });
  afterAll(() => {
    if (!dir) return;
    releaseUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  });
}

describe.skipIf(reason !== undefined)('berth-csi inline ephemeral volumes', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x));
  useCleanup(() => d);

  it('NodePublishVolume of an inline ephemeral volume mounts a new 64 MiB filesystem at the target', async () => {
    const id = inlineId();
    const target = podTarget(d, 'eph');
    await publishEphemeral(d, id, target, { size: '64Mi' });
    const [m] = mountsAt(target);
    expect(m?.fstype).toBe('ext4');
    expect(listLoops().find((l) => l.device === m?.source)?.backingFile).toBe(imageOf(d, id));
    expect(statSync(imageOf(d, id)).size).toBe(64 * MiB);
    // The filesystem's own metadata (journal, inode tables) takes up to ~15% of a volume this small.
    expect(fsTotalBytes(target)).toBeLessThanOrEqual(64 * MiB);
    expect(fsTotalBytes(target)).toBeGreaterThan(0.8 * 64 * MiB);
    writeFileSync(join(target, 'scratch'), 'pod data');
    const { entries } = await d.controller.listVolumes();
    expect(entries.map((e) => e.volume?.volumeId)).not.toContain(id);
  });

  it('NodeUnpublishVolume of an ephemeral volume deletes its bytes and its record', async () => {
    const id = inlineId();
    const target = podTarget(d, 'eph-gone');
    await publishEphemeral(d, id, target, { size: '16Mi' });
    expect(existsSync(imageOf(d, id))).toBe(true);
    await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    expect(mountsAt(target)).toEqual([]);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(imageOf(d, id))).toBe(false);
    expect(existsSync(join(d.root, 'ephemeral', id))).toBe(false);
    expect(await waitFor(() => !listLoops().some((l) => l.backingFile === imageOf(d, id)))).toBe(true);
    await expectStatus(d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target }), GrpcStatus.NOT_FOUND, /volume_id/);
    const { entries } = await d.controller.listVolumes();
    expect(entries.map((e) => e.volume?.volumeId)).not.toContain(id);
  });

  it('an ephemeral directory volume is bind-mounted; on a root without quotas it needs sizeEnforcement unenforced in its context', async () => {
    const target = podTarget(d, 'eph-dir');
    if (!projectQuotaSupport(join(d.root, 'volumes'))) {
      const refused = inlineId();
      await expectStatus(
        d.node.nodePublishVolume({ volumeId: refused, targetPath: target, volumeCapability: mountCap(), volumeContext: { [ephemeralKey]: 'true', type: 'directory', size: '8Mi' } }),
        GrpcStatus.FAILED_PRECONDITION,
        /sizeEnforcement: unenforced/,
      );
      expect(existsSync(target)).toBe(false);
      expect(existsSync(join(d.root, 'volumes', refused))).toBe(false);
    }
    const id = inlineId();
    await publishEphemeral(d, id, target, { type: 'directory', size: '8Mi', sizeEnforcement: 'unenforced' });
    expect(mountsAt(target)[0]?.root).toMatch(new RegExp(`/volumes/${id}$`));
    await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    expect(existsSync(join(d.root, 'volumes', id))).toBe(false);
  });

  it('an ephemeral volume of size "12 apples" is INVALID_ARGUMENT naming volume_context.size', async () => {
    const id = inlineId();
    const target = podTarget(d, 'eph-apples');
    undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
    await expectStatus(
      d.node.nodePublishVolume({ volumeId: id, targetPath: target, volumeCapability: mountCap(), volumeContext: { [ephemeralKey]: 'true', size: '12 apples' } }),
      GrpcStatus.INVALID_ARGUMENT,
      /^volume_context\.size: "12 apples"/,
    );
    expect(existsSync(target)).toBe(false);
    expect(existsSync(imageOf(d, id))).toBe(false);
  });

  it('an ephemeral volume with an unknown attribute is INVALID_ARGUMENT naming it', async () => {
    const id = inlineId();
    const target = podTarget(d, 'eph-typo');
    undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
    await expectStatus(
      d.node.nodePublishVolume({ volumeId: id, targetPath: target, volumeCapability: mountCap(), volumeContext: { [ephemeralKey]: 'true', sizee: '64Mi' } }),
      GrpcStatus.INVALID_ARGUMENT,
      /^volume_context\.sizee: unknown volume attribute/,
    );
    expect(existsSync(imageOf(d, id))).toBe(false);
  });

  it('NodeStageVolume of an inline ephemeral volume is FAILED_PRECONDITION: they are only published', async () => {
    const id = inlineId();
    const target = podTarget(d, 'eph-stage');
    await publishEphemeral(d, id, target, { size: '16Mi' });
    const staging = d.path('staging/eph');
    await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() }), GrpcStatus.FAILED_PRECONDITION, /volume_id: .*ephemeral/);
    expect(existsSync(staging)).toBe(false);
  });

  it('an ephemeral volume published with volumeMountGroup 4321 has its root owned by group 4321, setgid', async () => {
    const id = inlineId();
    const target = podTarget(d, 'eph-group');
    await publishEphemeral(d, id, target, { size: '16Mi' }, mountCap(Mode.SINGLE_NODE_WRITER, { volumeMountGroup: '4321' }));
    const st = statSync(target);
    expect(st.gid).toBe(4321);
    expect(st.mode & 0o2000).toBe(0o2000);
  });

  it('an ephemeral volume with a non-numeric volumeMountGroup is INVALID_ARGUMENT and leaves no volume behind', async () => {
    const id = inlineId();
    const target = podTarget(d, 'eph-bad-group');
    undo.push(() => d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target }));
    await expectStatus(
      d.node.nodePublishVolume({ volumeId: id, targetPath: target, volumeCapability: mountCap(Mode.SINGLE_NODE_WRITER, { volumeMountGroup: 'staff' }), volumeContext: { [ephemeralKey]: 'true', size: '16Mi' } }),
      GrpcStatus.INVALID_ARGUMENT,
      /volume_mount_group: "staff"/,
    );
    expect(existsSync(target)).toBe(false);
    expect(existsSync(imageOf(d, id))).toBe(false);
    expect(existsSync(join(d.root, 'ephemeral', id))).toBe(false);
    await expectStatus(d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target }), GrpcStatus.NOT_FOUND, /volume_id/);
  });
});

describe.skipIf(reason !== undefined)('berth-csi static local PVs', () => {
  let d: CsiDriver;
  let dir: string;
  /** The only place static volumes may come from (staticPathPrefixes in the config file). */
  let disks: string;
  const options: CsiDriverOptions = {};
  useTestDir('csi-static-', (x) => {
    dir = x;
    disks = join(dir, 'disks');
    mkdirSync(disks);
    const config = join(dir, 'berth-csi.yaml');
    writeFileSync(config, `staticPathPrefixes:\n  - ${disks}\n`);
    options.args = ['--config', config];
  });
  useCsiDriver((x) => (d = x), options);
  useCleanup(() => d, () => [dir]);

  /** A directory under the allowed prefix holding one file. */
  function staticDir(name: string): string {
    const path = join(disks, name);
    mkdirSync(path);
    writeFileSync(join(path, 'existing'), 'was here before');
    return path;
  }

  it('NodeStageVolume and NodePublishVolume bind-mount a static directory CreateVolume never made', async () => {
    const path = staticDir('dir-a');
    const id = 'static-dir-a';
    const staging = d.path('staging/static-a');
    const target = podTarget(d, 'static-a');
    await stage(d, id, staging, mountCap(), { type: 'static', path });
    await publish(d, id, staging, target);
    expect(mountsAt(staging)[0]?.root).toMatch(/\/disks\/dir-a$/);
    expect(mountsAt(target)[0]?.root).toMatch(/\/disks\/dir-a$/);
    expect(readFileSync(join(target, 'existing'), 'utf8')).toBe('was here before');
    writeFileSync(join(target, 'new'), 'from the pod');
    expect(readFileSync(join(path, 'new'), 'utf8')).toBe('from the pod');
    const { entries } = await d.controller.listVolumes();
    expect(entries.map((e) => e.volume?.volumeId)).not.toContain(id);
  });

  it('a static path outside staticPathPrefixes is INVALID_ARGUMENT naming volume_context.path', async () => {
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    // A sibling sharing the prefix's spelling is outside it too.
    const lookalike = `${disks}-evil`;
    mkdirSync(lookalike);
    for (const path of [outside, lookalike, '/etc']) {
      const staging = d.path('staging/outside');
      await expectStatus(
        d.node.nodeStageVolume({ volumeId: 'static-outside', stagingTargetPath: staging, volumeCapability: mountCap(), volumeContext: { type: 'static', path } }),
        GrpcStatus.INVALID_ARGUMENT,
        /^volume_context\.path: .*outside the configured staticPathPrefixes/,
      );
      expect(existsSync(staging)).toBe(false);
    }
  });

  it('a static path that does not exist is NOT_FOUND naming volume_context.path', async () => {
    await expectStatus(
      d.node.nodeStageVolume({ volumeId: 'static-missing', stagingTargetPath: d.path('staging/missing'), volumeCapability: mountCap(), volumeContext: { type: 'static', path: join(disks, 'not-there') } }),
      GrpcStatus.NOT_FOUND,
      /^volume_context\.path: .*does not exist/,
    );
  });

  it('a static directory asked for as a raw block device is INVALID_ARGUMENT', async () => {
    const path = staticDir('dir-block');
    await expectStatus(
      d.node.nodeStageVolume({ volumeId: 'static-dir-block', stagingTargetPath: d.path('staging/dir-block'), volumeCapability: blockCap(), volumeContext: { type: 'static', path } }),
      GrpcStatus.INVALID_ARGUMENT,
      /volume_capability: .*directory/,
    );
  });

  it('a static loop-backed ext4 device staged with a mount capability is mounted as ext4, and its data stays', async () => {
    // The disk: a file we format and attach ourselves, named under the prefix by a symlink as
    // /dev/disk/by-id names real disks.
    const image = join(dir, 'disk.img');
    writeFileSync(image, '');
    truncateSync(image, 32 * MiB);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    const device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    undo.push(() => rmSync(image, { force: true }));
    undo.push(() => detachLoop(device));
    const link = join(disks, 'by-id-disk1');
    symlinkSync(device, link);
    undo.push(() => rmSync(link, { force: true }));

    const id = 'static-disk1';
    const staging = d.path('staging/disk1');
    const target = podTarget(d, 'disk1');
    await stage(d, id, staging, mountCap(), { type: 'static', path: link, fsType: 'ext4' });
    expect(mountsAt(staging)[0]?.fstype).toBe('ext4');
    await publish(d, id, staging, target);
    expect(mountsAt(target)[0]?.fstype).toBe('ext4');
    writeFileSync(join(target, 'keep'), 'on the disk');
    await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
    expect(mountsAt(staging)).toEqual([]);
    // The driver did not attach this device, so it does not detach it either.
    expect(listLoops().find((l) => l.device === device)?.backingFile).toBe(realpathSync(image));
    await stage(d, id, staging, mountCap(), { type: 'static', path: link, fsType: 'ext4' });
    expect(readFileSync(join(staging, 'keep'), 'utf8')).toBe('on the disk');
  });

  it('NodeUnstageVolume forgets a static volume: NodeGetVolumeStats is NOT_FOUND afterwards', async () => {
    const path = staticDir('dir-forget');
    const id = 'static-dir-forget';
    const staging = d.path('staging/forget');
    await stage(d, id, staging, mountCap(), { type: 'static', path });
    const stats = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: staging });
    expect(stats.volumeCondition?.abnormal).toBe(false);
    await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
    await expectStatus(d.node.nodeGetVolumeStats({ volumeId: id, volumePath: staging }), GrpcStatus.NOT_FOUND, /volume_id/);
  });

  it('static data is never deleted: DeleteVolume refuses while staged and afterwards leaves the directory as it was', async () => {
    const path = staticDir('dir-keep');
    const id = 'static-dir-keep';
    const staging = d.path('staging/keep');
    const target = podTarget(d, 'keep');
    await stage(d, id, staging, mountCap(), { type: 'static', path });
    await publish(d, id, staging, target);
    writeFileSync(join(target, 'written'), 'by the pod');
    await expectStatus(d.controller.deleteVolume({ volumeId: id }), GrpcStatus.FAILED_PRECONDITION, /volume_id: .*in use/);
    await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
    await d.controller.deleteVolume({ volumeId: id });
    expect(readFileSync(join(path, 'existing'), 'utf8')).toBe('was here before');
    expect(readFileSync(join(path, 'written'), 'utf8')).toBe('by the pod');
  });
});

describe.skipIf(reason !== undefined)('berth-csi block volumes', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x));
  useCleanup(() => d);

  async function stagedBlockVolume(bytes = 8 * MiB): Promise<{ id: string; staging: string; device: string }> {
    const id = await createVolume(d, bytes, {}, blockCap());
    const staging = d.path(`staging/${id}`);
    await stage(d, id, staging, blockCap());
    const loops = listLoops().filter((l) => l.backingFile === imageOf(d, id));
    expect(loops).toHaveLength(1);
    return { id, staging, device: loops[0]!.device };
  }

  it('NodeStageVolume of a block volume attaches a loop device backed by its file and mounts nothing', async () => {
    const { id, staging, device } = await stagedBlockVolume();
    const loop = listLoops().find((l) => l.device === device)!;
    expect(loop.backingFile).toBe(imageOf(d, id));
    expect(existsSync(`/sys/block/${device.slice('/dev/'.length)}/loop`)).toBe(true);
    expect(mountsAt(staging)).toEqual([]);
    // Staging again finds the same device.
    await stage(d, id, staging, blockCap());
    expect(listLoops().filter((l) => l.backingFile === imageOf(d, id)).map((l) => l.device)).toEqual([device]);
  });

  it('NodePublishVolume of a block volume bind-mounts the device on a file it creates at the target; 1 MiB written there reads back', async () => {
    const { id, staging, device } = await stagedBlockVolume();
    const target = podTarget(d, 'block');
    await publish(d, id, staging, target, blockCap());
    expect(statSync(target).isBlockDevice()).toBe(true);
    expect(statSync(target).rdev).toBe(statSync(device).rdev);
    expect(mountsAt(target)).toHaveLength(1);

    const data = randomBytes(MiB);
    const fd = openSync(target, 'r+');
    try {
      expect(writeSync(fd, data, 0, MiB, 0)).toBe(MiB);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const back = Buffer.alloc(MiB);
    const rfd = openSync(target, 'r');
    try {
      expect(readSync(rfd, back, 0, MiB, 0)).toBe(MiB);
    } finally {
      closeSync(rfd);
    }
    expect(back.equals(data)).toBe(true);
  });

  it('NodeGetVolumeStats of a published block volume reports its total bytes', async () => {
    const { id, staging } = await stagedBlockVolume(8 * MiB);
    const target = podTarget(d, 'block-stats');
    await publish(d, id, staging, target, blockCap());
    const stats = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target });
    expect(stats.usage.find((u) => u.unit === Unit.BYTES)?.total).toBe(BigInt(8 * MiB));
    expect(stats.volumeCondition?.abnormal).toBe(false);
  });

  it('NodeUnpublishVolume of a block volume removes the file; NodeUnstageVolume detaches the loop device', async () => {
    const { id, staging, device } = await stagedBlockVolume();
    const target = podTarget(d, 'block-gone');
    await publish(d, id, staging, target, blockCap());
    await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
    expect(mountsAt(target)).toEqual([]);
    expect(existsSync(target)).toBe(false);
    await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
    expect(await waitFor(() => !listLoops().some((l) => l.backingFile === imageOf(d, id)))).toBe(true);
    expect(existsSync(`/sys/block/${device.slice('/dev/'.length)}/loop`)).toBe(false);
  });

  it('NodePublishVolume of a block volume read-only refuses writes through the target: it gets its own read-only loop device, since a read-only bind mount of a device node does not stop writes', async () => {
    const { id, staging } = await stagedBlockVolume();
    const target = podTarget(d, 'block-ro');
    await publish(d, id, staging, target, blockCap(), true);
    expect(mountsAt(target)[0]?.mountOptions).toContain('ro');
    let code: string | undefined;
    try {
      const fd = openSync(target, 'r+');
      try {
        writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 0);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code;
    }
    expect(['EROFS', 'EPERM', 'EACCES']).toContain(code);
  });

  it('a mount capability on a block volume is INVALID_ARGUMENT', async () => {
    const id = await createVolume(d, 8 * MiB, {}, blockCap());
    await expectStatus(d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: d.path('staging/block-as-fs'), volumeCapability: mountCap() }), GrpcStatus.INVALID_ARGUMENT, /volume_capability: .*block volume/);
    expect(listLoops().filter((l) => l.backingFile === imageOf(d, id))).toEqual([]);
  });
});

describe.skipIf(reason !== undefined)('berth-csi VOLUME_MOUNT_GROUP', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x));
  useCleanup(() => d);

  it('NodeStageVolume with volumeMountGroup 4321 makes the volume root group 4321 with setgid', async () => {
    const cap = mountCap(Mode.SINGLE_NODE_WRITER, { volumeMountGroup: '4321' });
    const id = await createVolume(d, 32 * MiB, {}, cap);
    const staging = d.path('staging/group');
    const target = podTarget(d, 'group');
    await stage(d, id, staging, cap);
    await publish(d, id, staging, target, cap);
    for (const path of [staging, target]) {
      const st = statSync(path);
      expect(st.gid).toBe(4321);
      expect(st.mode & 0o2000).toBe(0o2000);
      // The group may write, so a pod running as another user with fsGroup 4321 can.
      expect(st.mode & 0o070).toBe(0o070);
    }
  });

  it('NodeStageVolume with a non-numeric volumeMountGroup is INVALID_ARGUMENT and leaves nothing staged', async () => {
    const id = await createVolume(d, 32 * MiB);
    const staging = d.path('staging/bad-group');
    undo.push(() => d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging }));
    await expectStatus(
      d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap(Mode.SINGLE_NODE_WRITER, { volumeMountGroup: 'staff' }) }),
      GrpcStatus.INVALID_ARGUMENT,
      /volume_mount_group: "staff"/,
    );
    expect(mountsAt(staging)).toEqual([]);
    expect(await waitFor(() => !listLoops().some((l) => l.backingFile === imageOf(d, id)))).toBe(true);
    // Not recorded as staged: another staging path is accepted.
    await stage(d, id, d.path('staging/good-group'));
  });
});

describe.skipIf(!isRoot)('berth-csi kubelet plugin registration', () => {
  let d: CsiDriver;
  let registrationDir: string;
  const options: CsiDriverOptions = {};
  useTestDir('csi-registration-', (x) => {
    registrationDir = x;
    options.args = ['--kubelet-registration', '--registration-dir', registrationDir];
  });
  useCsiDriver((x) => (d = x), options);

  /** The registration socket, once the driver serves it (it starts right after the CSI socket). */
  async function registrationSocket(): Promise<string> {
    const socket = join(registrationDir, 'local.csi.berth.io-reg.sock');
    expect(await waitFor(() => existsSync(socket)), `${socket} did not appear`).toBe(true);
    return socket;
  }

  it('--kubelet-registration serves local.csi.berth.io-reg.sock in the registration dir, for root only', async () => {
    const socket = await registrationSocket();
    expect(lstatSync(socket).isSocket()).toBe(true);
    // The mode is set right after listen(); allow for that instant.
    await waitFor(() => (lstatSync(socket).mode & 0o777) === 0o600, 1000);
    expect(lstatSync(socket).mode & 0o777).toBe(0o600);
  });

  it('Registration GetInfo names a CSIPlugin local.csi.berth.io at the CSI socket, speaking 1.0.0', async () => {
    const client = unixClient(RegistrationClient, await registrationSocket());
    try {
      const info = await callUnary<InfoRequest, PluginInfo>((req, done) => client.getInfo(req, done), {});
      expect(info.type).toBe('CSIPlugin');
      expect(info.name).toBe('local.csi.berth.io');
      expect(info.endpoint).toBe(d.socket);
      expect(info.supportedVersions).toContain('1.0.0');
    } finally {
      client.close();
    }
  });

  it('Registration NotifyRegistrationStatus answers OK and the driver logs a refused registration', async () => {
    const client = unixClient(RegistrationClient, await registrationSocket());
    try {
      await callUnary<RegistrationStatus, RegistrationStatusResponse>((req, done) => client.notifyRegistrationStatus(req, done), { pluginRegistered: false, error: 'x' });
    } finally {
      client.close();
    }
    expect(await waitFor(() => /kubelet refused the registration/.test(d.log()))).toBe(true);
    const line = d.log().split('\n').find((l) => l.includes('kubelet refused the registration'))!;
    expect(JSON.parse(line)).toMatchObject({ err: 'x', driver: 'local.csi.berth.io' });
  });
});
