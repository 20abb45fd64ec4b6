import { closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { GrpcStatus } from '../../lib/errors.js';
import { mountCap, MiB, type CsiDriver } from '../../world/csi.js';
import { csiSkipReason, useCsiDriver } from '../../world/csi-suite.js';
import { containerConfig, type CriWorld, imageSpec, podSandboxConfig, pushImage } from '../../world/cri.js';
import { useCriWorld } from '../../world/cri-suite.js';
import { underAttack } from '../../world/hostile.js';
import { busyboxImage } from '../../world/images.js';
import { isRoot } from '../../world/netns.js';

// Pods that plant things in the host paths berth-cri and berth-csi use as root: symlinks and a
// FIFO where a container's log goes (a log shipper with a hostPath of /var/log can), an image
// whose /etc is a symlink to the host's /, and a directory volume with more files and levels
// than a stats walk should ever take on. Each attack is refused (or bounded) while the daemon
// stays alive, small and answering its probe call.

/** The daemon's verdict on a call: its gRPC code and message, or 'ok'. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'ok';
  } catch (err) {
    return `${(err as { code: number }).code} ${(err as Error).message}`;
  }
}

/** A call that must not hang: its outcome, or 'hung' after `ms`. */
function within(ms: number, call: Promise<unknown>): Promise<string> {
  return Promise.race([outcome(call), sleep(ms).then(() => 'hung')]);
}

describe.runIf(isRoot)('berth-cri: container log paths and image user files', () => {
  let world: CriWorld;
  useCriWorld(['busybox'], (w) => (world = w));
  let n = 0;

  async function pod(): Promise<{ id: string; config: ReturnType<typeof podSandboxConfig> }> {
    const config = podSandboxConfig(world, `paths${++n}`);
    const { podSandboxId } = await world.runtime.runPodSandbox({ config, runtimeHandler: '' });
    return { id: podSandboxId, config };
  }

  function victimFile(): string {
    const victim = join(world.dir, `victim-${n}`);
    writeFileSync(victim, 'untouched\n');
    return victim;
  }

  it('a symlink planted where the container log will be: the container is refused and the file it points at is not written', async () => {
    const p = await pod();
    const victim = victimFile();
    const config = containerConfig('c', world.image('busybox'), { command: ['sh', '-c', 'echo pwned; sleep 1'] });
    symlinkSync(victim, join(p.config.logDirectory, config.logPath));
    const created = await outcome(world.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config }).then(({ containerId }) => world.runtime.startContainer({ containerId })));
    expect(created).toMatch(new RegExp(`^${GrpcStatus.FAILED_PRECONDITION} .*log_path: .*symlink`));
    await sleep(1500);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
  });

  it('a symlink in place of the container\'s directory below the pod log directory is not followed', async () => {
    const p = await pod();
    const outside = join(world.dir, `outside-${n}`);
    mkdirSync(outside);
    const config = containerConfig('c', world.image('busybox'), { command: ['sh', '-c', 'echo pwned; sleep 1'], logPath: 'c/0.log' });
    symlinkSync(outside, join(p.config.logDirectory, 'c'));
    const created = await outcome(world.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config }).then(({ containerId }) => world.runtime.startContainer({ containerId })));
    expect(created).toMatch(/log_path: .*symlink/);
    await sleep(1500);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('FIFOs planted at log paths are refused at once: no CreateContainer hangs, berth-cri keeps answering', async () => {
    const p = await pod();
    const verdicts: string[] = [];
    const report = await underAttack({ pid: world.cri.child.pid!, probe: () => world.runtime.version({ version: '' }) }, async () => {
      // More than libuv's 4 threadpool threads, which blocking opens of FIFOs would each hold forever.
      for (let i = 0; i < 6; i++) {
        const config = containerConfig(`fifo${i}`, world.image('busybox'), { logPath: `fifo${i}.log` });
        execFileSync('mkfifo', [join(p.config.logDirectory, config.logPath)]);
        verdicts.push(await within(5000, world.runtime.createContainer({ podSandboxId: p.id, config, sandboxConfig: p.config })));
      }
    });
    // Release any open still blocked on a FIFO (only an unfixed daemon has one).
    for (let i = 0; i < 6; i++) {
      try {
        closeSync(openSync(join(p.config.logDirectory, `fifo${i}.log`), constants.O_RDONLY | constants.O_NONBLOCK));
      } catch { /* not there */ }
    }
    expect(verdicts.every((v) => /^9 .*log_path: .*FIFO/.test(v)), verdicts.join('\n')).toBe(true);
    expect(report.alive).toBe(true);
    expect(report.rssGrowthMiB).toBeLessThan(64);
    expect(report.slowestProbeMs).toBeLessThan(500);
  });

  it('an image whose /etc is a symlink to /etc never makes berth-cri resolve its user from the host\'s /etc/passwd', async () => {
    // A user the host has and the test image does not.
    const imageUsers = new Set(['root', 'daemon', 'www-data', 'berth', 'nobody']);
    const hostUser = readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':')[0]!).find((u) => u && !imageUsers.has(u));
    expect(hostUser, 'a user in the host /etc/passwd that the test image lacks').toBeDefined();
    // Inside the container /etc -> /etc is a loop; resolved on the host, it is the host's /etc.
    const image = busyboxImage({ User: hostUser }, [[{ type: 'symlink', path: 'etc', target: '/etc' }]]);
    await pushImage(world.registry.host, 'berth-test/etc-link', '1', image);
    const ref = world.image('etc-link');
    await world.images.pullImage({ image: imageSpec(ref), auth: undefined, sandboxConfig: undefined });
    const p = await pod();
    const created = await outcome(world.runtime.createContainer({ podSandboxId: p.id, config: containerConfig('c', ref), sandboxConfig: p.config }));
    expect(created).toMatch(new RegExp(`^${GrpcStatus.INVALID_ARGUMENT} .*user "${hostUser}" not found in the image's /etc/passwd`));
  });
});

const csiReason = csiSkipReason(['ext4']);

describe.skipIf(csiReason !== undefined)('berth-csi: stats of a directory volume a pod filled with a huge, deep tree', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x), { args: ['--directory-size-enforcement', 'unenforced', '--stats-walk-max-entries', '20000', '--stats-walk-max-depth', '64'] });

  it('NodeGetVolumeStats stops at its bounds, says so in the volume condition, and the driver keeps answering', async () => {
    const { volume } = await d.controller.createVolume({ name: 'hostile-tree', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: BigInt(64 * MiB) }, parameters: { type: 'directory' } });
    const id = volume!.volumeId;
    const staging = d.path('staging/hostile');
    const target = d.path('pods/hostile/mount');
    mkdirSync(d.path('pods/hostile'), { recursive: true });
    await d.node.nodeStageVolume({ volumeId: id, stagingTargetPath: staging, volumeCapability: mountCap() });
    await d.node.nodePublishVolume({ volumeId: id, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap() });
    try {
      // What the pod does through its mount: 30000 files, and a chain of directories 200 deep.
      for (let b = 0; b < 30; b++) {
        mkdirSync(join(target, `b${b}`));
        for (let i = 0; i < 1000; i++) writeFileSync(join(target, `b${b}`, `f${i}`), '');
      }
      let deep = target;
      for (let i = 0; i < 200; i++) deep = join(deep, 'd');
      mkdirSync(deep, { recursive: true });

      const conditions: string[] = [];
      const report = await underAttack({ pid: d.pid!, probe: () => d.identity.probe({}) }, async () => {
        for (let i = 0; i < 3; i++) {
          const stats = await d.node.nodeGetVolumeStats({ volumeId: id, volumePath: target });
          conditions.push(`${stats.volumeCondition?.abnormal} ${stats.volumeCondition?.message}`);
        }
      });
      expect(conditions.every((c) => /^true usage is a lower bound: .*\((statsWalkMaxEntries|statsWalkMaxDepth)\)/.test(c)), conditions.join('\n')).toBe(true);
      expect(report.alive).toBe(true);
      expect(report.rssGrowthMiB).toBeLessThan(64);
      expect(report.slowestProbeMs).toBeLessThan(500);
    } finally {
      await d.node.nodeUnpublishVolume({ volumeId: id, targetPath: target });
      await d.node.nodeUnstageVolume({ volumeId: id, stagingTargetPath: staging });
      await d.controller.deleteVolume({ volumeId: id });
    }
  }, 120_000);
});
