import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, credentials } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { maxMessageBytes } from '../lib/grpc/unix-socket.js';
import * as csi from '../proto/gen/csi.js';
import type { ContainerAllocateResponse } from '../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import { ContainerConfig, ImageServiceClient, KeyValue, PodSandboxConfig, RuntimeServiceClient } from '../proto/gen/runtime/v1/api.js';
import { repoRoot } from './cni.js';
import { type Caller, csiCaller, MiB, mountCap } from './csi.js';
import { imageMethods, imageSpec, type Promisified, promisify, pushImage, runtimeMethods } from './cri.js';
import { FakeKubelet } from './fake-kubelet.js';
import { fakeGpus } from './gpu.js';
import { testImages } from './images.js';
import type { NodeBox } from './node-box.js';
import { startRegistry, type TestRegistry } from './registry.js';

// berth installed on a booted node (world/node-box.ts) the way an operator does it, and used the
// way kubelet would: what test/e2e/node-units.test.ts and `berth-demo node` share. The host plays
// kubelet's parts: a registry on the veth's host end (the node has no other network), a fake
// kubelet serving the node's device-plugins directory, gRPC clients on berthd's sockets through
// the node's root, and the CSI calls kubelet and the external provisioner make. Not importing
// vitest: the demo bundles this.

/** The fake GPUs berth-gpu describes in the node (its fake backend reads them from /srv/fake-gpu). */
export const nodeGpus = fakeGpus(2);
export const csiSocket = '/var/lib/kubelet/plugins/local.csi.berth.io/csi.sock';
export const podCidr = '10.244.0.0/24';
export const podUid = 'node-units-pod-1';
/** The paths kubelet would use for the pod's CSI volume "data". */
export const volumeTarget = `/var/lib/kubelet/pods/${podUid}/volumes/kubernetes.io~csi/data/mount`;
export const volumeStaging = '/var/lib/kubelet/plugins/kubernetes.io/csi/local.csi.berth.io/staging/data';

/** berthd's settings for the node: every component but the overlay, pulling from the world's registry. */
export function berthConfig(box: NodeBox, registryHost: string): string {
  return stringify({
    logLevel: 'info',
    cri: { sandboxImage: `${registryHost}/berth-test/pause:1`, registryConfigDir: '/etc/berth/certs.d' },
    // No kubelet watches plugins_registry here; the host talks to the CSI socket itself.
    csi: { nodeId: box.name, root: '/var/lib/berth/volumes', kubeletRegistration: false },
    gpu: { backend: 'fake', fakeDir: '/srv/fake-gpu' },
    cnid: { socket: '/run/berth/cni.sock' },
  });
}

/** The release tarball of this checkout (scripts/release.mjs, from dist/). */
export function releaseTarball(outDir: string): string {
  execFileSync(process.execPath, [join(repoRoot, 'scripts/release.mjs'), '--out', outDir], { stdio: 'pipe' });
  const tarball = readdirSync(outDir).find((f) => f.endsWith('.tar.gz'));
  if (!tarball) throw new Error(`scripts/release.mjs left no tarball in ${outDir}`);
  return join(outDir, tarball);
}

/**
 * Install berth as an operator does: the release tarball unpacked at /opt/berth, then
 * `/opt/berth/bin/berth install --config FILE`; returns what it printed. The packages it needs
 * are baked into the node, so its package check finds nothing to fetch. Before that, the world's
 * own files: the fake GPU description, the registry's hosts.toml, and `extraFiles` (paths
 * relative to the node's root, e.g. a test's unit drop-in).
 */
export async function installRelease(box: NodeBox, tarball: string, registryHost: string, extraFiles: Record<string, string> = {}): Promise<string> {
  const files: Record<string, string> = {
    'root/berth.yaml': berthConfig(box, registryHost),
    [`etc/berth/certs.d/${registryHost}/hosts.toml`]: `server = "http://${registryHost}"\n`,
    'srv/fake-gpu/gpus.json': JSON.stringify(nodeGpus, null, 2),
    'srv/fake-gpu/events': '',
    ...extraFiles,
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(box.root, path, '..'), { recursive: true });
    writeFileSync(join(box.root, path), content);
  }
  copyFileSync(tarball, join(box.root, 'root', basename(tarball)));
  await box.sh(`mkdir -p /opt/berth && tar -xzf /root/${basename(tarball)} -C /opt/berth --strip-components=1`);
  return box.sh(`/opt/berth/bin/berth install --config /root/berth.yaml --pod-cidr ${podCidr}`, { timeoutMs: 300_000 });
}

export type UnitProps = Record<string, string>;

export async function unitProps(box: NodeBox, unit: string): Promise<UnitProps> {
  const out = await box.sh(`systemctl show -p ActiveState,SubState,NRestarts,MainPID,Result,ExecMainStatus ${unit}`);
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** Wait until the unit is active with a main PID other than `notPid` (a restart has happened). */
export async function waitActive(box: NodeBox, unit: string, notPid?: string, timeoutMs = 60_000): Promise<UnitProps> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await unitProps(box, unit);
    if (p.ActiveState === 'active' && p.MainPID !== '0' && p.MainPID !== notPid) return p;
    if (Date.now() > deadline) throw new Error(`${unit} not active (again) within ${timeoutMs} ms: ${JSON.stringify(p)}\n${await box.journal(unit)}`);
    await sleep(250);
  }
}

/** What the host runs for the node: the registry it pulls from and the kubelet side of device plugins. */
export interface NodeServices {
  registry: TestRegistry;
  kubelet: FakeKubelet;
  stop(): Promise<void>;
}

/**
 * The registry on the veth's host end (the only address the node reaches) holding the test
 * images, and a fake kubelet whose Registration socket sits in the node's
 * /var/lib/kubelet/device-plugins, where berth-gpu looks for it.
 */
export async function serveNode(box: NodeBox): Promise<NodeServices> {
  let registry: TestRegistry | undefined;
  let kubelet: FakeKubelet | undefined;
  const stop = async (): Promise<void> => {
    await kubelet?.stop();
    await registry?.stop();
  };
  try {
    registry = await startRegistry({ address: box.hostAddress });
    const built = testImages();
    await pushImage(registry.host, 'berth-test/pause', '1', built.pause);
    await pushImage(registry.host, 'berth-test/busybox', '1', built.busybox);
    const pluginDir = join(box.root, 'var/lib/kubelet/device-plugins');
    mkdirSync(pluginDir, { recursive: true });
    kubelet = new FakeKubelet(pluginDir);
    await kubelet.start();
    return { registry, kubelet, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** gRPC clients on berthd's CRI and CSI sockets, opened from the host through the node's root. */
export interface NodeClients {
  runtime: Promisified<InstanceType<typeof RuntimeServiceClient>>;
  images: Promisified<InstanceType<typeof ImageServiceClient>>;
  csiNode: Caller<typeof csi.NodeService>;
  csiController: Caller<typeof csi.ControllerService>;
  close(): void;
}

/** Connect (again after a reboot: the paths go through the new PID 1). */
export function connectNode(box: NodeBox): NodeClients {
  const opts = { 'grpc.max_receive_message_length': maxMessageBytes };
  const cri = `unix://${box.hostPath('/run/berth/cri.sock')}`;
  const rs = new RuntimeServiceClient(cri, credentials.createInsecure(), opts);
  const is = new ImageServiceClient(cri, credentials.createInsecure(), opts);
  const cs = new Client(`unix://${box.hostPath(csiSocket)}`, credentials.createInsecure());
  return {
    runtime: promisify(rs, runtimeMethods),
    images: promisify(is, imageMethods),
    csiNode: csiCaller(cs, csi.NodeService),
    csiController: csiCaller(cs, csi.ControllerService),
    close: () => {
      for (const c of [rs, is, cs]) c.close();
    },
  };
}

/** Progress of a multi-step action, for the demo's narration; silent by default. */
export interface Narrator {
  step(text: string): void;
  show(text: string): void;
}

const silent: Narrator = { step: () => {}, show: () => {} };

export interface PodOnNode {
  podId: string;
  containerId: string;
  volumeId: string;
  image: string;
  /** The GPU kubelet allocated to the container, and berth-gpu's answer for it. */
  gpuUuid: string;
  allocated: ContainerAllocateResponse;
  /** Loop devices attached for the node's files once the volume was published. */
  loops: string[];
  /** What the container printed: the file on /data, the GPU's env and device node, its eth0 address. */
  seen: string;
  /** The file the container wrote, read from the node's own mount of the volume. */
  fromNode: string;
}

/**
 * What kubelet does for a pod with a CSI volume and a GPU, through the installed berthd:
 * Allocate a GPU from berth-gpu (through the fake kubelet), CreateVolume + NodeStage +
 * NodePublish on berth-csi, pull busybox, RunPodSandbox, and a container that writes a file on
 * the volume and keeps running; then what the container sees. Returns it all for the caller to
 * check; throws only if a call fails.
 */
export async function runPodWithVolumeAndGpu(box: NodeBox, api: NodeClients, kubelet: FakeKubelet, registryHost: string, say: Narrator = silent): Promise<PodOnNode> {
  say.step('kubelet: berth-gpu registered nvidia.com/gpu; ListAndWatch; Allocate one GPU');
  await kubelet.waitForRegistrations(1, 30_000);
  const listed = await kubelet.waitForList('nvidia.com/gpu', (d) => d.length === 2, 30_000);
  say.show(listed.devices.map((d) => `${d.ID} ${d.health}`).join('\n'));
  const gpuUuid = nodeGpus[1]!.uuid;
  const allocated = (await kubelet.allocate('nvidia.com/gpu', [[gpuUuid]])).containerResponses[0]!;
  say.show(`Allocate ${gpuUuid}: env ${JSON.stringify(allocated.envs)}, devices ${allocated.devices.map((d) => `${d.hostPath} -> ${d.containerPath}`).join(', ')}`);

  say.step('berth-csi: CreateVolume (64 MiB), NodeStageVolume (loop device + mount), NodePublishVolume (into the pod dir)');
  const { volume } = await api.csiController.createVolume({ name: 'node-units-data', capacityRange: { requiredBytes: BigInt(64 * MiB) }, volumeCapabilities: [mountCap()] });
  const volumeId = volume!.volumeId;
  await box.sh(`mkdir -p ${volumeStaging} ${volumeTarget}`);
  await api.csiNode.nodeStageVolume({ volumeId, stagingTargetPath: volumeStaging, volumeCapability: mountCap() });
  await api.csiNode.nodePublishVolume({ volumeId, stagingTargetPath: volumeStaging, targetPath: volumeTarget, volumeCapability: mountCap() });
  const loops = box.loops();
  say.show(`volume ${volumeId}: ${Number(volume!.capacityBytes) / MiB} MiB on ${loops.join(', ') || '(no loop device)'}\npublished at ${volumeTarget}`);

  const image = `${registryHost}/berth-test/busybox:1`;
  say.step(`berth-cri: PullImage ${image}, RunPodSandbox, CreateContainer + StartContainer with the volume at /data and the GPU`);
  const pulled = await api.images.pullImage({ image: imageSpec(image), auth: undefined, sandboxConfig: undefined });
  say.show(`pulled ${pulled.imageRef}`);
  const pod = PodSandboxConfig.fromPartial({
    metadata: { name: 'web', namespace: 'node-units', uid: podUid, attempt: 0 },
    hostname: 'web',
    logDirectory: `/var/log/pods/node-units_web_${podUid}`,
    linux: { cgroupParent: '', sysctls: {} },
  });
  const podId = (await api.runtime.runPodSandbox({ config: pod, runtimeHandler: '' })).podSandboxId;
  const config = ContainerConfig.fromPartial({
    metadata: { name: 'app', attempt: 0 },
    image: { image, userSpecifiedImage: image },
    command: ['sh', '-c', 'echo written-in-the-pod > /data/hello; exec sleep 3600'],
    logPath: 'app.log',
    mounts: [{ containerPath: '/data', hostPath: volumeTarget }],
    envs: Object.entries(allocated.envs).map(([key, value]) => KeyValue.fromPartial({ key, value: Buffer.from(value) })),
    devices: allocated.devices,
  });
  const containerId = (await api.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod })).containerId;
  await api.runtime.startContainer({ containerId });
  say.show(`pod ${podId.slice(0, 12)}, container ${containerId.slice(0, 12)} started`);

  const out = await api.runtime.execSync({ containerId, cmd: ['sh', '-c', 'cat /data/hello; echo "gpu=$NVIDIA_VISIBLE_DEVICES"; ls /dev/nvidia1; ip -4 -o addr show eth0'], timeout: 10n });
  const seen = out.stdout.toString() + out.stderr.toString();
  // The volume is the node's own mount, seen from the node.
  const fromNode = await box.sh(`cat ${volumeTarget}/hello`);
  return { podId, containerId, volumeId, image, gpuUuid, allocated, loops, seen, fromNode };
}
