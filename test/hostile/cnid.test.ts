import { statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, TestWorld } from '../../world/netns.js';
import { underAttack } from '../../world/hostile.js';
import { daemonBuildId, daemonPath, DaemonUnderTest, ownContext, removeDir, runRawClient, tempDir } from '../integration/cni-plugins/cnid/daemon.js';

// Callers of berth-cnid that lie about where they run, hundreds at once, or vanish right after
// their HELLO: each is declined on the kernel's word ("mismatch", so its shim would run the
// plugin standalone), nothing of theirs runs in the daemon, and meanwhile an honest call keeps
// being served quickly by a daemon whose memory stays put.

const world = new TestWorld();
let dir = '';
let daemon: DaemonUnderTest;
let buildId = '';
let netns: { name: string; path: string };

const socketPath = () => join(dir, 'cni.sock');

/** HELLO fields claiming to run exactly where the daemon runs. */
function claimingTheHost(plugin: string, env: Record<string, string>): string[] {
  const c = ownContext();
  return ['berth-cnid/1', buildId, plugin, c.cwd, c.netns, c.mntns, String(c.euid), c.umask.toString(8), ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
}

function frame(text: string): Buffer {
  const body = Buffer.from(text);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** The probe: an honest VERSION call from this process, spoken frame by frame; rejects unless served. */
function honestVersionCall(): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath());
    let pending = Buffer.alloc(0);
    const frames: string[] = [];
    const timer = setTimeout(() => socket.destroy(new Error('no answer in 5 s')), 5000);
    socket.on('connect', () => socket.write(frame(claimingTheHost('berth-loopback', { CNI_COMMAND: 'VERSION', PATH: daemonPath }).join('\0'))));
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        frames.push(pending.subarray(4, 4 + pending.readUInt32BE(0)).toString());
        pending = pending.subarray(4 + pending.readUInt32BE(0));
      }
      if (frames.length === 1 && frames[0] === 'ok' && !socket.writableEnded) socket.end(frame('{"cniVersion":"1.0.0"}'));
      if (frames.length === 4) socket.destroy();
    });
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      if (frames[0] === 'ok' && frames[1] === '0' && frames[2]?.includes('supportedVersions')) resolve();
      else reject(new Error(`not served: ${JSON.stringify(frames)}`));
    });
  });
}

describe.skipIf(!isRoot)('berth-cnid under callers that lie about their namespaces', () => {
  beforeAll(async () => {
    dir = tempDir('berth-cnid-hostile-');
    daemon = await DaemonUnderTest.start(socketPath());
    buildId = daemonBuildId();
    netns = world.netns('bt-hcnid-');
    await honestVersionCall();
  });
  afterAll(async () => {
    await daemon?.stop();
    world.cleanup();
    removeDir(dir);
  });

  it('declines 200 lying callers from another network namespace while honest calls stay fast', async () => {
    const served = daemon.served();
    const lie = { socket: socketPath(), hello: claimingTheHost('berth-bridge', { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_NETNS: '/proc/1/ns/net', CNI_IFNAME: 'eth0', PATH: daemonPath }), count: 50 };
    const answers: string[] = [];
    // Four waves of 50 at once. Each connection costs the daemon a fraction of a millisecond (most
    // of it Node's own accept and socket set-up, the kernel check stops after one readlink), so
    // the waves keep the probe's latency about the attack, not about this shared 2-core machine.
    const report = await underAttack({ pid: daemon.pid, probe: honestVersionCall }, async () => {
      for (let wave = 0; wave < 4; wave++) answers.push(...(await runRawClient(['nsenter', `--net=${netns.path}`], lie)).verdicts);
    });
    expect(report.alive).toBe(true);
    expect(report.rssGrowthMiB).toBeLessThan(64);
    expect(report.slowestProbeMs).toBeLessThan(500);
    expect(report.failedProbes).toBe(0);
    const own = ownContext().netns;
    expect(answers).toHaveLength(200);
    expect(new Set(answers)).toEqual(new Set([`mismatch: caller claims network namespace ${own} but runs in net:[${statSync(netns.path).ino}]`]));
    // Only the probes ran in the daemon.
    expect(daemon.served() - served).toBe(report.probes);
  });

  it('declines callers that exit right after their HELLO, and keeps serving', async () => {
    const served = daemon.served();
    const vanishing = { socket: socketPath(), hello: claimingTheHost('berth-bridge', { CNI_COMMAND: 'ADD', PATH: daemonPath }), count: 50, vanish: true };
    const report = await underAttack({ pid: daemon.pid, probe: honestVersionCall, settleMs: 500 }, async () => {
      for (let i = 0; i < 5; i++) await runRawClient(['nsenter', `--net=${netns.path}`], vanishing);
    });
    expect(report.alive).toBe(true);
    expect(report.rssGrowthMiB).toBeLessThan(64);
    expect(report.slowestProbeMs).toBeLessThan(500);
    expect(report.failedProbes).toBe(0);
    expect(daemon.served() - served).toBe(report.probes);
    await honestVersionCall();
  });
});
