import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../world/cni.js';
import type { FakeKubelet } from '../../world/fake-kubelet.js';
import { NodeBox, nodeBoxSkipReason } from '../../world/node-box.js';
import { connectNode, installRelease, type NodeClients, type NodeServices, nodeGpus as gpus, podCidr, releaseTarball, runPodWithVolumeAndGpu, serveNode, unitProps, volumeStaging, volumeTarget, waitActive } from '../../world/node-install.js';
import type { TestRegistry } from '../../world/registry.js';

// berthd under a real systemd: a booted Debian 12 node (world/node-box.ts) with berth installed
// in it from the release tarball with `berth install`, as an operator would (world/node-install.ts,
// shared with `berth-demo node`), then what an operator relies on: Type=notify readiness, /readyz,
// a pod with a CSI volume and a fake GPU through the installed berthd, `systemctl restart` and
// kill -9 with the pod running, the watchdog on a frozen loop, and a reboot. One node for the
// whole file, tests in order.

const skipReason = nodeBoxSkipReason() ?? (['dist/bin/berthd', 'dist/cli/berth'].every((f) => existsSync(join(repoRoot, f))) ? undefined : 'dist/ has no berthd or berth CLI: run node scripts/build.mjs');
if (skipReason) console.log(`skipping the node unit tests: ${skipReason}`);

/** The watchdog test freezes berthd: this test's own drop-in (not berth's) keeps it quick. */
const watchdogDropIn = {
  'etc/systemd/system/berthd.service.d/10-test-watchdog.conf': '# The watchdog test freezes berthd: a short WatchdogSec keeps it quick.\n[Service]\nWatchdogSec=5s\nTimeoutAbortSec=10s\n',
};

describe.skipIf(!!skipReason).sequential('berthd under systemd in a booted node', () => {
  let box: NodeBox;
  let node: NodeServices;
  let kubelet: FakeKubelet;
  let registry: TestRegistry;
  let api: NodeClients | undefined;
  let runtime: NodeClients['runtime'];
  let csiNode: NodeClients['csiNode'];
  let csiController: NodeClients['csiController'];
  let podId = '';
  let containerId = '';
  let volumeId = '';
  let installOutput = '';
  const releaseDir = mkdtempSync(join(tmpdir(), 'berth-node-release-'));

  /** gRPC clients on berthd's sockets, from the host through the node's root (again after a reboot: a new PID 1). */
  function connect(): void {
    api?.close();
    api = connectNode(box);
    ({ runtime, csiNode, csiController } = api);
  }

  beforeAll(async () => {
    box = await NodeBox.boot({ log: (line) => console.log(line) });
    // The node reaches the host only on its veth: the test images are served there, and
    // kubelet's device plugin registry is served from the host into the node's kubelet directory.
    node = await serveNode(box);
    ({ kubelet, registry } = node);
    const started = Date.now();
    installOutput = await installRelease(box, releaseTarball(releaseDir), registry.host, watchdogDropIn);
    console.log(`node unit tests: release made, berth installed and berthd started in ${((Date.now() - started) / 1000).toFixed(1)} s:\n${installOutput}`);
    connect();
  }, 900_000);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && box?.running) console.log(await box.journal('berthd', 120));
  });

  afterAll(async () => {
    api?.close();
    await node?.stop();
    await box?.destroy();
    rmSync(releaseDir, { recursive: true, force: true });
  }, 120_000);

  it('berthd is active: Type=notify, so READY=1 came from berthd itself', async () => {
    const p = await waitActive(box, 'berthd');
    expect(p).toMatchObject({ ActiveState: 'active', SubState: 'running', NRestarts: '0' });
    expect(Number(p.MainPID)).toBeGreaterThan(0);
    // The main process is the shipped runtime running berthd, not a wrapper.
    const cmdline = await box.sh(`tr '\\0' ' ' < /proc/${p.MainPID}/cmdline`);
    expect(cmdline).toMatch(/^\/usr\/lib\/berth\/current\/node\/bin\/node .*\/usr\/lib\/berth\/current\/bin\/berthd/);
    expect(installOutput).toContain('berthd.service');
  });

  it('berth install again changes nothing and leaves berthd running as it was', async () => {
    const before = await unitProps(box, 'berthd');
    const out = await box.sh(`/opt/berth/bin/berth install --config /root/berth.yaml --pod-cidr ${podCidr}`, { timeoutMs: 120_000 });
    expect(out).toContain('everything is unchanged');
    expect(await unitProps(box, 'berthd')).toMatchObject({ ActiveState: 'active', MainPID: before.MainPID });
  });

  it('/readyz inside the node: every component ready', async () => {
    const out = await box.sh('curl -sS --fail-with-body http://127.0.0.1:9400/readyz');
    for (const c of ['cri', 'csi', 'gpu', 'cnid']) expect(out).toContain(c);
    expect((await box.exec(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:9400/readyz/cri'])).stdout).toBe('200');
  });

  it('berth doctor passes on the node, and berth status shows every component', async () => {
    const doctor = await box.exec(['berth', 'doctor'], { allowFailure: true, timeoutMs: 60_000 });
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
    expect(doctor.stdout).toMatch(/this node can run pods/);
    for (const c of ['cri', 'csi', 'gpu', 'cnid']) expect(doctor.stdout).toMatch(new RegExp(`^ok +component ${c}: ready`, 'm'));
    const status = await box.exec(['berth', 'status'], { allowFailure: true, timeoutMs: 60_000 });
    expect(status.code, status.stdout + status.stderr).toBe(0);
    for (const c of ['cri', 'csi', 'gpu', 'cnid']) expect(status.stdout).toMatch(new RegExp(`^${c} +ready`, 'm'));
  });

  it('a pod with a CSI volume and a fake GPU runs through the installed berthd', async () => {
    const pod = await runPodWithVolumeAndGpu(box, api!, kubelet, registry.host);
    ({ podId, containerId, volumeId } = pod);
    expect(pod.loops.length).toBeGreaterThan(0);
    const text = pod.seen;
    expect(text).toContain('written-in-the-pod');
    expect(text).toContain(`gpu=${gpus[1]!.uuid}`);
    expect(text).toContain('/dev/nvidia1');
    expect(text).toMatch(/inet 10\.244\.0\.\d+\/24/);
    // The volume is the node's own mount, seen from the node.
    expect(pod.fromNode).toBe('written-in-the-pod\n');
  });

  it('systemctl restart berthd with the pod running keeps the container running and listed', async () => {
    const before = await unitProps(box, 'berthd');
    await box.sh('systemctl restart berthd', { timeoutMs: 120_000 });
    const after = await waitActive(box, 'berthd', before.MainPID);
    // A restart asked for is not counted by NRestarts (that counts Restart= restarts).
    expect(after.NRestarts).toBe(before.NRestarts);
    const { containers } = await runtime.listContainers({ filter: undefined });
    expect(containers.find((c) => c.id === containerId)?.state).toBe(1); // CONTAINER_RUNNING
    const out = await runtime.execSync({ containerId, cmd: ['cat', '/data/hello'], timeout: 10n });
    expect(out.stdout.toString()).toBe('written-in-the-pod\n');
  });

  it('kill -9 of berthd: systemd restarts it (Restart=always) and the pod is still listed', async () => {
    const before = await unitProps(box, 'berthd');
    await box.sh(`kill -9 ${before.MainPID}`);
    const after = await waitActive(box, 'berthd', before.MainPID);
    expect(Number(after.NRestarts)).toBe(Number(before.NRestarts) + 1);
    const { items } = await runtime.listPodSandbox({ filter: undefined });
    expect(items.map((p) => p.id)).toContain(podId);
    const { containers } = await runtime.listContainers({ filter: undefined });
    expect(containers.find((c) => c.id === containerId)?.state).toBe(1);
  });

  it('a frozen event loop (SIGSTOP): the watchdog kills berthd and systemd starts it again', async () => {
    const before = await unitProps(box, 'berthd');
    await box.sh('systemctl kill -s SIGSTOP berthd');
    // WatchdogSec=5s from the drop-in: no WATCHDOG=1 arrives while the process is stopped.
    const after = await waitActive(box, 'berthd', before.MainPID, 60_000);
    expect(Number(after.NRestarts)).toBeGreaterThan(Number(before.NRestarts));
    const journal = await box.journal('berthd', 200);
    expect(journal).toMatch(/[Ww]atchdog timeout/);
    const { containers } = await runtime.listContainers({ filter: undefined });
    expect(containers.find((c) => c.id === containerId)?.state).toBe(1);
  });

  it('an upgrade with the pod running: only berthd restarts, the container keeps running, the old release is kept', async () => {
    // The next release: this one under another version (what the planner compares).
    const version = (await box.sh('cat /opt/berth/VERSION')).trim();
    await box.sh(`rm -rf /opt/berth-next && cp -a /opt/berth /opt/berth-next && echo ${version}-next > /opt/berth-next/VERSION`);
    const before = await unitProps(box, 'berthd');
    const shimsBefore = await box.sh('pgrep -x containerd-shim | sort');
    expect(shimsBefore.trim()).not.toBe('');
    const out = await box.sh(`/opt/berth-next/bin/berth install --config /root/berth.yaml --pod-cidr ${podCidr}`, { timeoutMs: 120_000 });
    expect(out).toContain('berthd.service');
    await waitActive(box, 'berthd', before.MainPID);
    expect((await box.sh('readlink /usr/lib/berth/current /usr/lib/berth/previous')).split('\n')).toEqual([`releases/${version}-next`, `releases/${version}`, '']);
    // KillMode=process: the shims (and so the containers) are not berthd's to stop.
    expect(await box.sh('pgrep -x containerd-shim | sort')).toBe(shimsBefore);
    const { containers } = await runtime.listContainers({ filter: undefined });
    expect(containers.find((c) => c.id === containerId)?.state).toBe(1);
  });

  it('berth install --rollback: current back to the previous release, the pod still running', async () => {
    const version = (await box.sh('cat /opt/berth/VERSION')).trim();
    const before = await unitProps(box, 'berthd');
    await box.sh('/opt/berth-next/bin/berth install --rollback', { timeoutMs: 120_000 });
    await waitActive(box, 'berthd', before.MainPID);
    expect((await box.sh('readlink /usr/lib/berth/current')).trim()).toBe(`releases/${version}`);
    const cmdline = await box.sh(`tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value berthd)/cmdline`);
    expect(cmdline).toContain('/usr/lib/berth/current/bin/berthd');
    const { containers } = await runtime.listContainers({ filter: undefined });
    expect(containers.find((c) => c.id === containerId)?.state).toBe(1);
  });

  it('a reboot of the node: berthd comes back active, the pod is reconciled, nothing leaked', async () => {
    await box.bootAgain();
    connect();
    const p = await waitActive(box, 'berthd', undefined, 120_000);
    expect(p.NRestarts).toBe('0');
    // Every container process died with the old boot; berthd and containerd must agree on that.
    const { containers } = await runtime.listContainers({ filter: undefined });
    for (const c of containers) expect(c.state).not.toBe(1);
    // The pod can be removed cleanly, and nothing of it stays behind.
    await runtime.removePodSandbox({ podSandboxId: podId }).catch(() => undefined);
    const { items } = await runtime.listPodSandbox({ filter: undefined });
    expect(items.map((x) => x.id)).not.toContain(podId);
    const links = await box.sh('ip -o link show | cut -d: -f2');
    expect(links.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('veth'))).toEqual([]);
    const leases = await box.sh('ls /var/lib/berth/cni/networks/berth 2>/dev/null | grep -v -e last_reserved_ip -e lock || true');
    expect(leases.trim()).toBe('');
    // The volume is unpublished by kubelet after a reboot; once it is, no mount or loop is left.
    await csiNode.nodeUnpublishVolume({ volumeId, targetPath: volumeTarget });
    await csiNode.nodeUnstageVolume({ volumeId, stagingTargetPath: volumeStaging });
    // No mount of a volume, a pod's shm or a container's rootfs is left in the node.
    const mounts = await box.sh('cut -d" " -f5 /proc/self/mountinfo');
    expect(mounts.split('\n').filter((m) => /^\/(var\/lib\/kubelet|var\/lib\/berth|run\/berth|run\/containerd\/io\.containerd\.runtime\.v2\.task\/berth\.io)\//.test(m))).toEqual([]);
    expect(box.loops()).toEqual([]);
    await csiController.deleteVolume({ volumeId });
  });

  it('berth uninstall --purge: no unit, file or state of berth is left; containerd keeps its own data', async () => {
    // The test's own drop-in is not berth's to remove.
    await box.sh('rm -rf /etc/systemd/system/berthd.service.d && systemctl daemon-reload');
    await box.sh('/opt/berth/bin/berth uninstall --purge', { timeoutMs: 120_000 });
    api?.close();
    api = undefined;
    expect((await box.exec(['systemctl', 'is-active', 'berthd'], { allowFailure: true })).stdout.trim()).not.toBe('active');
    const left = await box.sh('find /usr/lib/berth /etc/berth /var/lib/berth /run/berth /usr/local/bin/berth /etc/systemd/system/berthd.service /etc/cni/net.d/10-berth.conflist /etc/crictl.yaml 2>/dev/null || true');
    expect(left.trim()).toBe('');
    expect(await box.sh('ls /opt/cni/bin 2>/dev/null | grep ^berth- || true')).toBe('');
    expect((await box.sh('systemctl is-active containerd')).trim()).toBe('active');
    expect(await box.sh('test -d /var/lib/containerd && echo kept')).toBe('kept\n');
  });
});
