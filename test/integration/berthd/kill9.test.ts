import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loopsBackedBy } from '../../../lib/loop.js';
import { readMountInfo } from '../../../lib/mount.js';
import { ContainerState, PodSandboxState } from '../../../proto/gen/runtime/v1/api.js';
import { berthCniDir, type CniOutcome } from '../../../world/cni.js';
import { containerConfig, CriWorld, imageSpec, podSandboxConfig } from '../../../world/cri.js';
import { MiB, mountCap } from '../../../world/csi.js';
import { csiSkipReason } from '../../../world/csi-suite.js';
import type { BerthdProcess } from '../../../world/berthd.js';
import { BerthdWorld } from '../../../world/berthd.js';
import { linkExists, TestWorld, trySh } from '../../../world/netns.js';
import { bridgePorts, leaseFiles } from '../../../world/pod-network.js';
import { holdingIpam } from '../cni-plugins/cnid/daemon.js';

// The proof that a berthd killed -9 loses nothing: with a running pod (CNI through the
// shim and berthd's cnid), a published CSI volume, a GPU allocation, the overlay programmed and
// a CNI ADD in the middle of its work, berthd is killed -9 and started again on the same file.
// Everything is still there and answers, the half-done ADD is undone by a DEL, and the whole
// lot is then torn down through the APIs leaving no mount, loop device, veth or lease behind.

const skip = csiSkipReason();
if (skip) console.log(`skipping the berthd kill -9 test: ${skip}`);

const netns = new TestWorld();
let cri: CriWorld | undefined;
let world: BerthdWorld | undefined;
let berthd: BerthdProcess | undefined;

/** The containerd task of a container: its pid and status (ctr tasks ls). */
function task(containerd: string, id: string): { pid: number; status: string } | undefined {
  const out = execFileSync('ctr', ['-a', containerd, '-n', 'berth.io', 'tasks', 'ls'], { encoding: 'utf8' });
  const row = out.split('\n').slice(1).map((l) => l.trim().split(/\s+/)).find((f) => f[0] === id);
  return row ? { pid: Number(row[1]), status: row[2]! } : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What the kernel has of the overlay's VXLAN device: its index, MAC, IPv4 addresses and routes. */
function overlayKernel(device: string): { index: number; mac: string; addresses: string[]; routes: string[] } {
  const ip = (args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
  const [link] = JSON.parse(ip(['-j', 'link', 'show', 'dev', device])) as { ifindex: number; address: string }[];
  const [addr] = JSON.parse(ip(['-4', '-j', 'addr', 'show', 'dev', device])) as { addr_info: { local: string; prefixlen: number }[] }[];
  const routes = ip(['-4', 'route', 'show', 'table', 'all', 'dev', device]).trim().split('\n').filter(Boolean).sort();
  return { index: link!.ifindex, mac: link!.address, addresses: addr!.addr_info.map((a) => `${a.local}/${a.prefixlen}`), routes };
}

/** Lease files of the CRI network that name a container. */
function leasesOf(dataDir: string, containerId: string): string[] {
  return leaseFiles(dataDir, 'berth-test').filter((ip) => readFileSync(join(dataDir, 'berth-test', ip), 'utf8').includes(containerId));
}

describe.skipIf(!!skip)('berthd killed -9 with everything running', () => {
  beforeAll(async () => {
    cri = await CriWorld.start({ berthCri: false });
    world = await BerthdWorld.start({ cri });
  }, 120_000);

  afterAll(async () => {
    if (berthd?.running && cri) {
      cri.connect(world!.socketOf('cri'));
      await cri.removeAllPods().catch(() => undefined);
    }
    await world?.stop();
    netns.cleanup();
    await cri?.stop();
  });

  it('pods, volumes, GPU allocations, the overlay and a half-done CNI ADD all survive, and tear down cleanly', async (ctx) => {
    ctx.onTestFailed(() => console.log(berthd?.logText().slice(-8000), berthd?.stderr));
    const w = world!;
    const c = cri!;
    berthd = await w.berthd(w.document(['cri', 'csi', 'gpu', 'overlay', 'cnid']));
    const p = berthd;
    await p.waitReady();
    c.connect(w.socketOf('cri'));
    const csi = w.csi();
    const ipamDir = join(c.dir, 'ipam');

    // --- A pod with a running container; its network through the shim and berthd's cnid.
    await c.images.pullImage({ image: imageSpec(c.image('busybox')), auth: undefined, sandboxConfig: undefined });
    const podConfig = podSandboxConfig(c, 'kill9');
    const { podSandboxId } = await c.runtime.runPodSandbox({ config: podConfig, runtimeHandler: '' });
    const { containerId } = await c.runtime.createContainer({ podSandboxId, config: containerConfig('sleeper', c.image('busybox'), { command: ['sleep', '3600'] }), sandboxConfig: podConfig });
    await c.runtime.startContainer({ containerId });
    const podIp = (await c.runtime.podSandboxStatus({ podSandboxId, verbose: false })).status?.network?.ip;
    expect(podIp).toMatch(/^10\./);
    await expect.poll(() => BerthdWorld.cnidServed(p, 'ADD').filter((l) => l.plugin === 'berth-bridge' && l.containerId === podSandboxId && l.exitCode === 0)).toHaveLength(1);
    const containerTask = task(c.containerd.socket, containerId);
    expect(containerTask?.status).toBe('RUNNING');

    // --- A CSI volume created, staged and published (a loop device, an ext4 mount, a bind mount).
    const { volume } = await csi.controller.createVolume({ name: 'kill9', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: BigInt(32 * MiB) } });
    const volumeId = volume!.volumeId;
    const staging = join(w.csiHostDir, 'staging');
    const target = join(w.csiHostDir, 'pods', 'kill9', 'volume');
    mkdirSync(join(w.csiHostDir, 'pods', 'kill9'), { recursive: true });
    await csi.node.nodeStageVolume({ volumeId, stagingTargetPath: staging, volumeCapability: mountCap() });
    await csi.node.nodePublishVolume({ volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: mountCap(), readonly: false });
    writeFileSync(join(target, 'data'), 'written before the kill\n');
    const mountsBefore = readMountInfo().filter((m) => m.mountPoint === staging || m.mountPoint === target).map((m) => m.mountPoint).sort();
    expect(mountsBefore).toEqual([staging, target].sort());
    expect(loopsBackedBy(w.csiRoot)).toHaveLength(1);

    // --- A GPU allocation through the fake kubelet.
    await w.kubelet.waitForList('nvidia.com/gpu', (d) => d.length === w.gpus.length);
    const allocation = await w.kubelet.allocate('nvidia.com/gpu', [[w.gpus[0]!.uuid]]);
    expect(allocation.containerResponses[0]?.envs.NVIDIA_VISIBLE_DEVICES).toBe(w.gpus[0]!.uuid);

    // --- The overlay: its subnet and its VXLAN device with the VTEP address.
    const subnetBefore = readFileSync(w.subnetFile, 'utf8');
    const overlayBefore = overlayKernel(w.overlay.device);
    const subnet = /^BERTH_SUBNET=(\S+)$/m.exec(subnetBefore)![1]!;
    expect(overlayBefore.addresses).toEqual([`${subnet.replace(/\.1\/24$/, '.0')}/32`]);
    expect(overlayBefore.routes.length).toBeGreaterThan(0);

    // --- A CNI ADD through the shim and cnid, held inside its IPAM step (address leased, veth made).
    const heldDir = mkdtempSync(join(w.dir, 'held-'));
    const held = holdingIpam(heldDir);
    const ns = netns.netns('bt-k9-');
    const inFlightId = `inflight-${podSandboxId.slice(0, 12)}`;
    const conf = {
      cniVersion: '1.0.0',
      name: 'berth-test',
      type: 'berth-bridge',
      bridge: c.bridge,
      isGateway: true,
      ipam: { type: held.type, ranges: [[{ subnet: c.subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDir },
    };
    const call = (command: string) => ({ command, containerId: inFlightId, netns: ns.path, ifname: 'eth0', path: `${heldDir}:${berthCniDir}` });
    const inFlight: Promise<CniOutcome> = w.cni('berth-bridge', call('ADD'), conf);
    await expect.poll(() => existsSync(held.started), { timeout: 15_000 }).toBe(true);
    expect(leasesOf(ipamDir, inFlightId)).toHaveLength(1);
    expect(bridgePorts(c.bridge)).toHaveLength(2);

    // --- kill -9, mid-ADD.
    const pidBefore = p.pid;
    await p.kill('SIGKILL');
    writeFileSync(held.release, '');
    const outcome = await inFlight;
    // Held in its IPAM step, it cannot have finished: the shim says the daemon went away mid-call.
    expect(outcome.code, outcome.stdout + outcome.stderr).toBe(1);
    expect(outcome.json?.code, outcome.stdout).toBe(11);

    // --- Start again on the same file.
    await p.launch();
    expect(p.pid).not.toBe(pidBefore);
    await p.waitReady(undefined, 30_000);
    expect(p.lines(/could not start|the component failed/)).toEqual([]);

    // The pod and its container: listed RUNNING, the task alive in containerd with the same pid.
    c.connect(w.socketOf('cri'));
    const pods = (await c.runtime.listPodSandbox({ filter: undefined })).items;
    expect(pods.map((x) => [x.id, x.state])).toEqual([[podSandboxId, PodSandboxState.SANDBOX_READY]]);
    const containers = (await c.runtime.listContainers({ filter: undefined })).containers;
    expect(containers.map((x) => [x.id, x.state])).toEqual([[containerId, ContainerState.CONTAINER_RUNNING]]);
    expect(task(c.containerd.socket, containerId)).toEqual(containerTask);
    expect(alive(containerTask!.pid)).toBe(true);
    expect((await c.runtime.podSandboxStatus({ podSandboxId, verbose: false })).status?.network?.ip).toBe(podIp);
    const exec = await c.runtime.execSync({ containerId, cmd: ['pidof', 'sleep'], timeout: 5n });
    expect(exec.exitCode, exec.stderr.toString()).toBe(0);

    // The volume: still mounted, its data there, and NodeGetVolumeStats answers.
    expect(readMountInfo().filter((m) => m.mountPoint === staging || m.mountPoint === target).map((m) => m.mountPoint).sort()).toEqual(mountsBefore);
    expect(readFileSync(join(target, 'data'), 'utf8')).toBe('written before the kill\n');
    const csiAfter = w.csi();
    const stats = await csiAfter.node.nodeGetVolumeStats({ volumeId, volumePath: target });
    expect(stats.usage.find((u) => u.total > 0n)).toBeDefined();
    expect(stats.volumeCondition?.abnormal ?? false).toBe(false);

    // The GPU plugin registered again and lists the same devices; Allocate answers as before.
    await w.kubelet.waitForRegistrations(2, 15_000);
    const list = await w.kubelet.waitForList('nvidia.com/gpu', (d) => d.length === w.gpus.length);
    expect(list.devices.map((d) => d.ID).sort()).toEqual(w.gpus.map((g) => g.uuid).sort());
    expect((await w.kubelet.allocate('nvidia.com/gpu', [[w.gpus[0]!.uuid]])).containerResponses[0]?.envs).toEqual(allocation.containerResponses[0]?.envs);

    // The overlay: the same subnet, the same device (adopted, not rebuilt), address and routes.
    expect(readFileSync(w.subnetFile, 'utf8')).toBe(subnetBefore);
    expect(overlayKernel(w.overlay.device)).toEqual(overlayBefore);

    // The half-done ADD: a DEL through the restarted cnid undoes it; no lease, no veth left.
    const del = await w.cni('berth-bridge', call('DEL'), conf);
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(leasesOf(ipamDir, inFlightId)).toEqual([]);
    expect(linkExists('eth0', ns.name)).toBe(false);
    expect(bridgePorts(c.bridge)).toHaveLength(1);
    await expect.poll(() => BerthdWorld.cnidServed(p, 'DEL').filter((l) => l.containerId === inFlightId && l.exitCode === 0).length).toBeGreaterThan(0);

    // --- Tear everything down through the APIs; nothing may be left.
    await c.runtime.stopPodSandbox({ podSandboxId });
    await c.runtime.removePodSandbox({ podSandboxId });
    await csiAfter.node.nodeUnpublishVolume({ volumeId, targetPath: target });
    await csiAfter.node.nodeUnstageVolume({ volumeId, stagingTargetPath: staging });
    await csiAfter.controller.deleteVolume({ volumeId });
    expect((await c.runtime.listPodSandbox({ filter: undefined })).items).toEqual([]);
    expect(alive(containerTask!.pid)).toBe(false);
    expect(readMountInfo().filter((m) => m.mountPoint.startsWith(`${w.dir}/`))).toEqual([]);
    expect(loopsBackedBy(w.csiRoot)).toEqual([]);
    expect(bridgePorts(c.bridge)).toEqual([]);
    expect(leaseFiles(ipamDir, 'berth-test')).toEqual([]);
    expect(trySh('ip', ['-o', 'link', 'show', 'type', 'veth']).stdout.split('\n').filter((l) => l.includes(`master ${c.bridge}`))).toEqual([]);
    expect(await p.stop()).toBe(0);
  }, 60_000);
});
