import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { berthCniDir, repoRoot } from '../../../../world/cni.js';
import { isRoot, TestWorld, uniqueName } from '../../../../world/netns.js';
import { daemonBuildId, daemonPath, DaemonUnderTest, ownContext, removeDir, runRawClient, tempDir, type RawOutcome } from './daemon.js';

// berth-cnid asks the kernel who called (SO_PEERCRED, /proc/<pid>/), not the caller: a client in
// another network or mount namespace, directory or umask that claims the daemon's own is
// declined, and its call then runs standalone, as the shim does after a decline, and succeeds.
// The client (raw-client.mjs) speaks the protocol on its own.

const hostLocalBundle = join(repoRoot, 'dist/cni-js/berth-host-local.cjs');

const world = new TestWorld();
let dir = '';
let daemon: DaemonUnderTest;
/** Each test's own network name, so its leases are its own; and the daemon's count before it. */
let network = '';
let servedBefore = 0;

/** A berth-host-local ADD that claims to run exactly where the daemon runs. */
function hostLocalAdd(containerId: string) {
  const own = ownContext();
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_NETNS: '/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: berthCniDir, PATH: daemonPath };
  const conf = { cniVersion: '1.1.0', name: network, type: 'bridge', ipam: { type: 'berth-host-local', subnet: '10.203.9.0/24', dataDir: join(dir, 'ipam') } };
  return {
    socket: join(dir, 'cni.sock'),
    hello: ['berth-cnid/1', daemonBuildId(), 'berth-host-local', own.cwd, own.netns, own.mntns, String(own.euid), own.umask.toString(8), ...Object.entries(env).map(([k, v]) => `${k}=${v}`)],
    stdin: JSON.stringify(conf),
    bundle: hostLocalBundle,
    env,
  };
}

const leases = () => readdirSync(join(dir, 'ipam', network)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));

/** The call was declined for `reason`, then ran standalone and allocated an address. */
function expectDeclinedThenStandalone(out: RawOutcome, reason: string | RegExp): void {
  expect(out.verdicts).toHaveLength(1);
  expect(out.verdicts[0]).toMatch(typeof reason === 'string' ? new RegExp(`^mismatch: ${reason.replace(/[[\]()]/g, '\\$&')}$`) : reason);
  expect(out.ran).toBe('standalone');
  expect(out.code, `${out.stdout} ${out.stderr}`).toBe(0);
  expect(JSON.parse(out.stdout!)).toMatchObject({ ips: [{ address: expect.stringMatching(/^10\.203\.9\.\d+\/24$/) }] });
  expect(daemon.served()).toBe(servedBefore);
}

describe.skipIf(!isRoot)('berth-cnid trusts the kernel, not the caller', () => {
  // One daemon for the file: every test counts from where the last one left it.
  beforeAll(async () => {
    dir = tempDir('berth-cnid-peer-');
    daemon = await DaemonUnderTest.start(join(dir, 'cni.sock'));
  });
  afterAll(async () => {
    await daemon?.stop();
    removeDir(dir);
  });
  beforeEach(() => {
    network = uniqueName('cnidpeer-');
    servedBefore = daemon.served();
  });
  afterEach(() => world.cleanup());

  it('serves the same client when it tells the truth (the control)', async () => {
    const out = await runRawClient([], hostLocalAdd('truthful'));
    expect(out).toMatchObject({ verdicts: ['ok'], ran: 'daemon', code: 0 });
    expect(daemon.served()).toBe(servedBefore + 1);
    expect(leases()).toHaveLength(1);
  });

  it('declines a caller in another network namespace that claims the host\'s', async () => {
    const ns = world.netns('bt-peer-');
    const out = await runRawClient(['nsenter', `--net=${ns.path}`], hostLocalAdd('other-netns'));
    expectDeclinedThenStandalone(out, `caller claims network namespace ${ownContext().netns} but runs in net:[${statSync(ns.path).ino}]`);
    expect(daemon.declined()).toContain(out.verdicts[0]!.slice('mismatch: '.length));
    expect(leases()).toHaveLength(1);
  });

  it('declines a caller in another mount namespace that claims the host\'s', async () => {
    const out = await runRawClient(['unshare', '--mount', '--propagation', 'private'], hostLocalAdd('other-mntns'));
    const own = ownContext().mntns;
    expectDeclinedThenStandalone(out, /^mismatch: caller claims mount namespace mnt:\[\d+\] but runs in mnt:\[\d+\]$/);
    const [claimed, actual] = /(mnt:\[\d+\]) but runs in (mnt:\[\d+\])/.exec(out.verdicts[0]!)!.slice(1);
    expect(claimed).toBe(own);
    expect(actual).not.toBe(own);
  });

  it('declines a caller that lies about its working directory or its umask', async () => {
    const cwd = await runRawClient([], hostLocalAdd('other-cwd'), dir);
    expectDeclinedThenStandalone(cwd, `caller claims working directory ${process.cwd()} but works in ${dir}`);
    const umask = await runRawClient(['sh', '-c', 'umask 077 && exec "$0" "$@"'], hostLocalAdd('other-umask'));
    expectDeclinedThenStandalone(umask, `caller claims umask ${ownContext().umask.toString(8)} but has umask 77`);
    expect(leases()).toHaveLength(2);
  });
});
