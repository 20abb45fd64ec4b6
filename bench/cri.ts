import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { credentials } from '@grpc/grpc-js';
import { ImageServiceClient, LinuxContainerConfig, RuntimeServiceClient, type ContainerConfig, type PodSandboxConfig } from '../proto/gen/runtime/v1/api.js';
import { defaultMaskedPaths, defaultReadonlyPaths } from '../cri-shim/oci/defaults.js';
import { median, printContainerdCalls, printStepMedians, rssMiB } from './common.js';
import { containerConfig, CriWorld, imageMethods, podSandboxConfig, promisify, runtimeMethods } from '../world/cri.js';
import { BerthdWorld } from '../world/berthd.js';
import { repoRoot } from '../world/cni.js';

// bench/cri: the same pod lifecycle (RunPodSandbox, CreateContainer, StartContainer,
// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox) N times against berth-cri
// and against containerd's own CRI plugin, on one private containerd (namespaces berth.io and
// k8s.io), the same CNI network (berth's plugins) and the same images from a local registry.
// Runs alternate between the two so neither gets the warmer machine. Prints medians per step
// and berth's ratio; then berth-cri's RSS idle and with 50 pods running. Asserts nothing.
// BENCH_CRI_CNI says how berth-cri reaches berth's plugins: `cnid` (default: a berth-cnid beside
// it, the per-component units' setup), `berthd` (berthd hosting the CRI and cnid: in-process, the
// default install) or `exec` (no daemon: a Node start per plugin call). containerd's CRI always
// executes the plugin executables, as any libcni runtime does.

const rounds = Number(process.env.BENCH_PODS ?? 20);
const rssPods = Number(process.env.BENCH_RSS_PODS ?? 50);
const cniMode = process.env.BENCH_CRI_CNI ?? 'cnid';
const steps = ['RunPodSandbox', 'CreateContainer', 'StartContainer', 'StopContainer', 'RemoveContainer', 'StopPodSandbox', 'RemovePodSandbox'] as const;
type Step = (typeof steps)[number];
type Cri = { runtime: ReturnType<typeof promisify<InstanceType<typeof RuntimeServiceClient>>>; images: ReturnType<typeof promisify<InstanceType<typeof ImageServiceClient>>> };

let seq = 0;
function pod(world: CriWorld, runtime: string): PodSandboxConfig {
  seq += 1;
  return podSandboxConfig(world, `bench${seq}`, { metadata: { name: `bench${seq}`, namespace: `bench-${runtime}`, uid: `bench-${runtime}-${seq}-${Date.now()}`, attempt: 0 } });
}

function container(image: string): ContainerConfig {
  return containerConfig('main', image, {
    // Exits promptly on SIGTERM, so StopContainer measures the runtime, not a grace period.
    command: ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'],
    // What kubelet sends for an unprivileged container. containerd's CRI masks nothing when the
    // lists are empty (berth-cri applies these defaults then), so without them the two runtimes
    // would not set up the same container.
    linux: LinuxContainerConfig.fromPartial({ securityContext: { maskedPaths: defaultMaskedPaths, readonlyPaths: defaultReadonlyPaths } }),
  });
}

// BENCH_CRI_GAP_MS: a pause before each step, so what a runtime does after its previous reply
// (kubelet rarely calls back within a millisecond) is not counted in the next step.
const gapMs = Number(process.env.BENCH_CRI_GAP_MS ?? 0);

async function timed<T>(out: Record<Step, number[]>, step: Step, fn: () => Promise<T>): Promise<T> {
  if (gapMs > 0) await sleep(gapMs);
  const t = process.hrtime.bigint();
  const r = await fn();
  out[step].push(Number(process.hrtime.bigint() - t) / 1e6);
  return r;
}

async function lifecycle(world: CriWorld, cri: Cri, label: string, out: Record<Step, number[]>): Promise<void> {
  const config = pod(world, label);
  const { podSandboxId } = await timed(out, 'RunPodSandbox', () => cri.runtime.runPodSandbox({ config, runtimeHandler: '' }));
  const { containerId } = await timed(out, 'CreateContainer', () => cri.runtime.createContainer({ podSandboxId, config: container(world.image('busybox')), sandboxConfig: config }));
  await timed(out, 'StartContainer', () => cri.runtime.startContainer({ containerId }));
  await timed(out, 'StopContainer', () => cri.runtime.stopContainer({ containerId, timeout: 10n }));
  await timed(out, 'RemoveContainer', () => cri.runtime.removeContainer({ containerId }));
  await timed(out, 'StopPodSandbox', () => cri.runtime.stopPodSandbox({ podSandboxId }));
  await timed(out, 'RemovePodSandbox', () => cri.runtime.removePodSandbox({ podSandboxId }));
}

/** A berth-cnid on the world's own socket, as its unit would run it; resolves once it listens. */
async function startCnid(socket: string): Promise<ChildProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.BERTH_LOG_LEVEL;
  const child = spawn(process.execPath, [join(repoRoot, 'dist/cnid/berth-cnid'), '--socket', socket], { env, stdio: 'ignore' });
  for (let i = 0; i < 200 && !existsSync(socket) && child.exitCode === null; i++) await sleep(50);
  if (!existsSync(socket)) throw new Error('berth-cnid did not start');
  return child;
}

async function main(): Promise<void> {
  const world = await CriWorld.start({ containerdCri: true, berthCri: cniMode !== 'berthd', flags: ['--log-level', process.env.BENCH_CRI_LOG_LEVEL ?? 'warn'] });
  let cnid: ChildProcess | undefined;
  let berthdWorld: BerthdWorld | undefined;
  let criPid: number;
  try {
    if (cniMode === 'cnid') {
      cnid = await startCnid(join(world.dir, 'cni.sock'));
      await world.killCri();
      world.cnidSocket = join(world.dir, 'cni.sock');
      await world.startCri();
      criPid = world.cri.child.pid!;
    } else if (cniMode === 'berthd') {
      // At info at least: the world knows berthd is up from its "serving /metrics" line.
      berthdWorld = await BerthdWorld.start({ cri: world });
      const berthd = await berthdWorld.berthd(berthdWorld.document(['cri', 'cnid'], { logLevel: process.env.BENCH_CRI_LOG_LEVEL ?? 'info' }));
      await berthd.waitReady('cri');
      world.connect(berthdWorld.socketOf('cri'));
      criPid = berthd.pid!;
    } else {
      criPid = world.cri.child.pid!;
    }
    console.log(`berth-cri reaches berth's CNI plugins by: ${cniMode}`);
    const opts = { 'grpc.max_receive_message_length': 16 * 1024 * 1024 };
    const containerd: Cri = {
      runtime: promisify(new RuntimeServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure(), opts), runtimeMethods),
      images: promisify(new ImageServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure(), opts), imageMethods),
    };
    const berth: Cri = { runtime: world.runtime, images: world.images };
    for (const cri of [berth, containerd]) {
      for (const name of ['busybox', 'pause']) {
        await cri.images.pullImage({ image: { image: world.image(name), annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' }, auth: undefined, sandboxConfig: undefined });
      }
    }
    const results = { berth: {} as Record<Step, number[]>, containerd: {} as Record<Step, number[]> };
    for (const r of Object.values(results)) for (const s of steps) r[s] = [];
    const totals = { berth: [] as number[], containerd: [] as number[] };
    // One warm-up round each, not counted.
    const discard = (): Record<Step, number[]> => Object.fromEntries(steps.map((s) => [s, []])) as unknown as Record<Step, number[]>;
    await lifecycle(world, berth, 'berth', discard());
    await lifecycle(world, containerd, 'containerd', discard());
    for (let i = 0; i < rounds; i++) {
      for (const [label, cri] of (i % 2 ? [['containerd', containerd], ['berth', berth]] : [['berth', berth], ['containerd', containerd]]) as [keyof typeof results, Cri][]) {
        const t = Date.now();
        await lifecycle(world, cri, label, results[label]);
        totals[label].push(Date.now() - t);
      }
    }
    console.log(`bench/cri: ${rounds} pods each, medians in ms (berth-cri vs containerd's CRI plugin)`);
    console.log(`${'step'.padEnd(18)} ${'berth'.padStart(8)} ${'containerd'.padStart(11)} ${'ratio'.padStart(7)}`);
    for (const s of steps) {
      const b = median(results.berth[s]);
      const c = median(results.containerd[s]);
      console.log(`${s.padEnd(18)} ${b.toFixed(1).padStart(8)} ${c.toFixed(1).padStart(11)} ${(b / c).toFixed(2).padStart(7)}x`);
    }
    const b = median(totals.berth);
    const c = median(totals.containerd);
    console.log(`${'whole pod'.padEnd(18)} ${b.toFixed(1).padStart(8)} ${c.toFixed(1).padStart(11)} ${(b / c).toFixed(2).padStart(7)}x`);

    // The floor under every step: one empty RPC each way.
    const roundTrip = async (cri: Cri): Promise<number> => {
      const xs: number[] = [];
      for (let i = 0; i < 200; i++) {
        const t = process.hrtime.bigint();
        await cri.runtime.version({ version: '' });
        xs.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      return median(xs);
    };
    const [rb, rc] = [await roundTrip(berth), await roundTrip(containerd)];
    console.log(`${'Version (gRPC rtt)'.padEnd(18)} ${rb.toFixed(2).padStart(8)} ${rc.toFixed(2).padStart(11)} ${(rb / rc).toFixed(2).padStart(7)}x`);

    const level = process.env.BENCH_CRI_LOG_LEVEL;
    if ((level === 'debug' || level === 'trace') && cniMode !== 'berthd') printStepMedians(world.criLog());
    if (level === 'trace' && cniMode !== 'berthd') printContainerdCalls(world.criLog(), steps);
    const pid = criPid;
    console.log(`berth-cri RSS idle: ${rssMiB(pid).toFixed(1)} MiB`);
    const pods: string[] = [];
    for (let i = 0; i < rssPods; i++) {
      const config = pod(world, 'rss');
      const { podSandboxId } = await berth.runtime.runPodSandbox({ config, runtimeHandler: '' });
      const { containerId } = await berth.runtime.createContainer({ podSandboxId, config: container(world.image('busybox')), sandboxConfig: config });
      await berth.runtime.startContainer({ containerId });
      pods.push(podSandboxId);
    }
    console.log(`berth-cri RSS with ${rssPods} pods running: ${rssMiB(pid).toFixed(1)} MiB`);
    for (const id of pods) await berth.runtime.removePodSandbox({ podSandboxId: id });
  } finally {
    await berthdWorld?.stop();
    cnid?.kill('SIGTERM');
    await world.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
