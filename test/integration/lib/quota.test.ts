import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, type TestContext } from 'vitest';
import { attachLoopAndMount, detachLoop, loopsBackedBy } from '../../../lib/loop.js';
import { unmount, UmountFlags } from '../../../lib/mount.js';
import { parseMountInfo } from '../../../lib/mount.js';
import { getProjectId, getProjectQuota, projectQuotaSupport, quotaFilesystemOf, setProjectId, setProjectQuota, syncFilesystem } from '../../../lib/quota.js';
import { isRoot, trySh } from '../../../world/netns.js';

// Project quotas on real XFS and ext4 images, loop-mounted from a fresh temp directory that
// afterEach unmounts and detaches. The images are made and mounted as a CSI driver would:
//   XFS:  mkfs.xfs -q -f IMAGE (300 MiB, the smallest mkfs.xfs accepts), mount -o prjquota
//   ext4: mkfs.ext4 -q -F -O quota,project IMAGE, mount -o prjquota
// Enforcement needs a kernel with CONFIG_XFS_QUOTA resp. CONFIG_QUOTA + CONFIG_QFMT_V2 (ext4's
// quota feature cannot even be mounted read-write without them); a kernel that cannot mount an
// image skips that image's tests with the reason.

const MiB = 1 << 20;

interface Filesystem {
  fstype: 'xfs' | 'ext4';
  size: number;
  mkfs: (image: string) => string[];
  /** mkfs with project ids and quota accounting (ext4 needs features for both). */
  mkfsForQuota: (image: string) => string[];
  /** The error a write beyond the project's block limit fails with. */
  overQuota: string;
  /** What the kernel lacks when a prjquota mount fails. */
  needs: string;
}

const filesystems: Filesystem[] = [
  {
    fstype: 'xfs',
    size: 300 * MiB,
    mkfs: (image) => ['mkfs.xfs', '-q', '-f', image],
    mkfsForQuota: (image) => ['mkfs.xfs', '-q', '-f', image],
    // XFS answers ENOSPC for project quotas: a project is a directory tree that looks full.
    overQuota: 'ENOSPC',
    needs: 'CONFIG_XFS_QUOTA',
  },
  {
    fstype: 'ext4',
    size: 64 * MiB,
    mkfs: (image) => ['mkfs.ext4', '-q', '-F', image],
    mkfsForQuota: (image) => ['mkfs.ext4', '-q', '-F', '-O', 'quota,project', image],
    overQuota: 'EDQUOT',
    needs: 'CONFIG_QUOTA and CONFIG_QFMT_V2',
  },
];

function skipReason(): string | undefined {
  if (!isRoot) return 'not root';
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  if (trySh('mkfs.xfs', ['-V']).code !== 0) return 'mkfs.xfs is not installed (xfsprogs)';
  if (trySh('mkfs.ext4', ['-V']).code !== 0) return 'mkfs.ext4 is not installed (e2fsprogs)';
  return undefined;
}

const reason = skipReason();
if (reason) console.log(`skipping project quota integration tests: ${reason}`);

/**
 * Write `bytes` zero bytes to `file` as a container's process would: without CAP_SYS_RESOURCE,
 * which lets root go past ext4's hard limits (XFS enforces project quotas on root too).
 * Returns the name of the errno the write fails with, or undefined. By number: Node 20 reports
 * EDQUOT as code 'UNKNOWN' (libuv has no name for it).
 */
function writeWithoutSysResource(file: string, bytes: number): string | undefined {
  const script = `try { require('fs').writeFileSync(process.argv[1], Buffer.alloc(${bytes})) } catch (e) { process.stdout.write(String(-e.errno)) }`;
  const dropCap = ['--inh-caps=-sys_resource', '--bounding-set=-sys_resource'];
  const errno = execFileSync('setpriv', [...dropCap, process.execPath, '-e', script, file], { encoding: 'utf8' });
  return errno ? Object.entries(constants.errno).find(([, value]) => value === Number(errno))?.[0] : undefined;
}

describe('mountinfo: which filesystems enforce project quotas', () => {
  const mountinfo = [
    '22 1 253:0 / / rw,relatime - ext4 /dev/vda rw,discard',
    '40 22 7:0 / /srv/xfs rw,relatime shared:7 - xfs /dev/loop0 rw,inode64,logbufs=8,logbsize=32k,prjquota',
    '41 22 7:1 / /srv/ext4 rw,relatime - ext4 /dev/loop1 rw,prjquota',
    '42 22 7:2 / /srv/accounting rw,relatime - xfs /dev/loop2 rw,inode64,pqnoenforce',
    '43 22 7:3 / /srv/with\\040space rw - xfs /dev/loop3 rw,prjquota',
    '44 40 0:30 / /srv/xfs/tmp rw - tmpfs tmpfs rw',
  ].join('\n');

  it('reads the mount point, fstype, source and super options of each line', () => {
    expect(parseMountInfo(mountinfo)[1]).toEqual({
      root: '/',
      mountOptions: ['rw', 'relatime'],
      mountPoint: '/srv/xfs',
      fstype: 'xfs',
      source: '/dev/loop0',
      superOptions: ['rw', 'inode64', 'logbufs=8', 'logbsize=32k', 'prjquota'],
    });
    expect(parseMountInfo(mountinfo)[4]?.mountPoint).toBe('/srv/with space');
  });

  it('finds XFS and ext4 mounted with prjquota, through the longest mount point prefix', () => {
    expect(quotaFilesystemOf('/srv/xfs/volumes/v1', mountinfo)).toEqual({ device: '/dev/loop0', mountPoint: '/srv/xfs', fstype: 'xfs' });
    expect(quotaFilesystemOf('/srv/ext4', mountinfo)).toEqual({ device: '/dev/loop1', mountPoint: '/srv/ext4', fstype: 'ext4' });
    expect(quotaFilesystemOf('/srv/with space/v', mountinfo)?.device).toBe('/dev/loop3');
  });

  it('refuses accounting without enforcement, filesystems without prjquota, and mounts on top of one with it', () => {
    expect(quotaFilesystemOf('/srv/accounting/v', mountinfo)).toBeUndefined();
    expect(quotaFilesystemOf('/srv/xfs/tmp/v', mountinfo)).toBeUndefined();
    expect(quotaFilesystemOf('/srv/xfsother', mountinfo)).toBeUndefined();
    expect(quotaFilesystemOf('/home', mountinfo)).toBeUndefined();
  });
});

describe.skipIf(reason !== undefined)('project quotas on loop-mounted filesystems', () => {
  let dir: string;
  let mounts: string[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-quota-'));
    mounts = [];
  });

  afterEach(() => {
    for (const target of mounts) unmount(target, UmountFlags.detach);
    for (const loop of loopsBackedBy(dir)) detachLoop(loop.device);
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Make an image with `mkfs` and mount it at a fresh mount point with `data` options. A kernel
   * that cannot mount it skips the test, naming what it lacks.
   */
  function mountImage(ctx: TestContext, fs: Filesystem, mkfs: string[], data: string): { device: string; target: string } {
    const image = mkfs.at(-1)!;
    writeFileSync(image, '');
    truncateSync(image, fs.size);
    execFileSync(mkfs[0]!, mkfs.slice(1), { stdio: 'pipe' });
    const target = join(dir, 'mnt');
    mkdirSync(target);
    mounts.push(target);
    try {
      return { device: attachLoopAndMount(image, target, fs.fstype, 0, data), target };
    } catch (err) {
      const why = `this kernel cannot mount ${fs.fstype} made by \`${mkfs.slice(0, -1).join(' ')}\` with -o ${data || 'defaults'} ` +
        `(${(err as NodeJS.ErrnoException).code}); project quotas need ${fs.needs}`;
      console.log(`skipped: ${why}`);
      return ctx.skip(why);
    }
  }

  for (const fs of filesystems) {
    it(`${fs.fstype}: what is created in a directory inherits its project id`, (ctx) => {
      const { target } = mountImage(ctx, fs, fs.mkfsForQuota(join(dir, 'fs.img')), '');
      const volume = join(target, 'volume');
      mkdirSync(volume);
      setProjectId(volume, 4242);
      writeFileSync(join(volume, 'file'), 'data');
      mkdirSync(join(volume, 'sub'));
      writeFileSync(join(volume, 'sub', 'file'), 'data');
      expect([volume, join(volume, 'file'), join(volume, 'sub'), join(volume, 'sub', 'file')].map(getProjectId)).toEqual([4242, 4242, 4242, 4242]);
      expect(getProjectId(target)).toBe(0);
    });

    it(`${fs.fstype} with -o prjquota: a write beyond the project's limit fails with ${fs.overQuota} and usage is reported`, (ctx) => {
      const { device, target } = mountImage(ctx, fs, fs.mkfsForQuota(join(dir, 'fs.img')), 'prjquota');
      expect(projectQuotaSupport(target)).toEqual({ device, mountPoint: target, fstype: fs.fstype });
      const volume = join(target, 'volume');
      mkdirSync(volume);
      expect(projectQuotaSupport(volume)?.device).toBe(device);
      setProjectId(volume, 77);
      setProjectQuota(device, 77, { bytes: MiB, inodes: 100 });

      writeFileSync(join(volume, 'small'), Buffer.alloc(256 * 1024));
      expect(writeWithoutSysResource(join(volume, 'big'), 2 * MiB)).toBe(fs.overQuota);
      syncFilesystem(volume);
      const quota = getProjectQuota(device, 77);
      expect(quota.blockHardLimitBytes).toBe(MiB);
      expect(quota.inodeHardLimit).toBe(100);
      // The directory itself and its two files.
      expect(quota.inodes).toBe(3);
      expect(quota.spaceBytes).toBeGreaterThanOrEqual(256 * 1024);
      expect(quota.spaceBytes).toBeLessThanOrEqual(MiB);
      // XFS keeps no record of a project without usage or limits; it reads as zeros all the same.
      expect(getProjectQuota(device, 78)).toEqual({ spaceBytes: 0, inodes: 0, blockHardLimitBytes: 0, inodeHardLimit: 0 });
    });

    it(`${fs.fstype} without prjquota: projectQuotaSupport finds no quota filesystem`, (ctx) => {
      const { target } = mountImage(ctx, fs, fs.mkfs(join(dir, 'fs.img')), '');
      expect(projectQuotaSupport(target)).toBeUndefined();
    });
  }

  it('the root filesystem, mounted without prjquota, has no project quota support', (ctx) => {
    const root = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint === '/').at(-1);
    if (root?.superOptions.includes('prjquota')) ctx.skip('/ is mounted with prjquota here');
    expect(projectQuotaSupport('/')).toBeUndefined();
  });
});
