import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { credentials } from '@grpc/grpc-js';
import { LinuxPodSandboxConfig, RuntimeServiceClient, type PodSandboxConfig } from '../proto/gen/runtime/v1/api.js';
import { containerConfig, CriWorld, podSandboxConfig, promisify, runtimeMethods } from '../world/cri.js';
import { median, percentile, printStepMedians, rssMiB } from './common.js';

// bench/steady: what a runtime costs a node while nothing happens but kubelet's polling. N pods
// (one sleeping container each) run on one runtime at a time, then for BENCH_STEADY_S seconds
// (default 60) the bench does what kubelet's loops do: PLEG's relist (ListPodSandbox, then
// ListContainers) every second, and the stats loop (ListContainerStats, ListPodSandboxStats)
// every 10 s. Same private containerd, same images, same CNI network for both runtimes; the
// other runtime has no pods while one is measured, and the two take turns on which goes first.
//
// What is counted, from /proc/<pid>/stat (utime+stime, plus cutime+cstime of waited-for
// children such as CNI plugins), over the polling window:
// - containerd's CRI: the containerd process (its CRI plugin lives inside it).
// - berth-cri: the berth-cri process plus the containerd process, since every call berth-cri
//   makes to containerd is paid there. The containerd process also runs containerd's own CRI
//   plugin in both cases (idle, no pods, during berth's turn), so berth's side carries that too.
// - shims (containerd-shim-runc-v2 of the measured namespace) are shown apart: containerd's CRI
//   asks them for task metrics in its stats calls, berth-cri reads the cgroups itself.
// The bench process itself plays kubelet and is not counted. Before the polling window each
// runtime sits idle for BENCH_STEADY_IDLE_S (default 10) seconds, measured the same way, which
// says how much is background (timers, GC) rather than answering calls.
//
// BENCH_STEADY_PODS: the pod counts (default "50,100"). BENCH_STEADY_RUNTIMES: "berth",
// "containerd" or both (default). BENCH_STEADY_PROFILE=<dir>: berth-cri is restarted with
// --cpu-prof once its pods run, so the V8 profile written there at its exit covers its recovery,
// the idle wait and the polling only. BENCH_CRI_LOG_LEVEL=debug adds berth-cri's server-side
// handler medians per RPC (from its log). Asserts nothing.

const seconds = Number(process.env.BENCH_STEADY_S ?? 60);
const idleSeconds = Number(process.env.BENCH_STEADY_IDLE_S ?? 10);
const podCounts = (process.env.BENCH_STEADY_PODS ?? '50,100').split(',').map(Number).filter((n) => n > 0);
const runtimes = (process.env.BENCH_STEADY_RUNTIMES ?? 'berth,containerd').split(',') as Label[];
const profileDir = process.env.BENCH_STEADY_PROFILE;
// kubelet starts pods concurrently too; this keeps setup short without measuring anything.
const startConcurrency = 4;
const clockTicks = 100;
/** The pods' cgroups live under this one, removed at the end (runc leaves a pod's parent behind). */
const cgroupTop = `/berth-steady-${process.pid}`;

type Label = 'berth' | 'containerd';
type Runtime = ReturnType<typeof promisify<InstanceType<typeof RuntimeServiceClient>>>;
const rpcs = ['ListPodSandbox', 'ListContainers', 'ListContainerStats', 'ListPodSandboxStats'] as const;
type Rpc = (typeof rpcs)[number];

interface Usage {
  /** CPU seconds of the runtime's own process (berth-cri; none for containerd's CRI). */
  cri: number;
  containerd: number;
  shims: number;
}

interface Phase {
  label: Label;
  pods: number;
  idle: Usage & { seconds: number };
  poll: Usage & { seconds: number };
  rssCri: number;
  rssContainerd: number;
  latency: Record<Rpc, number[]>;
  errors: Record<Rpc, string[]>;
}

/** CPU seconds a process and its waited-for children used, 0 when it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14 .. cstime 17.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / clockTicks;
  } catch {
    return 0;
  }
}

/** The runc shims of `namespace` serving the containerd at `socket`. */
function shimPids(socket: string, namespace: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.startsWith('/usr/bin/containerd-shim') && cmdline.includes(`\0${socket}`) && cmdline.includes(`-namespace\0${namespace}\0`)) out.push(Number(pid));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Remove the (by now empty) pod cgroups under cgroupTop in every hierarchy, deepest first. */
function removeCgroups(): void {
  const rmTree = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmTree(join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch (err) {
      console.log(`cannot remove cgroup ${dir}: ${(err as Error).message}`);
    }
  };
  const root = '/sys/fs/cgroup';
  const tops = existsSync(join(root, 'cgroup.controllers')) ? [root] : readdirSync(root).map((h) => join(root, h));
  for (const top of tops) if (existsSync(join(top, cgroupTop))) rmTree(join(top, cgroupTop));
}

const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

class Bench {
  private seq = 0;
  readonly containerdPid: number;
  readonly containerd: Runtime;

  constructor(readonly world: CriWorld) {
    const pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith(`containerd\0--config\0${world.containerd.dir}/`);
      } catch {
        return false;
      }
    });
    if (pids.length !== 1) throw new Error(`expected one containerd process for ${world.containerd.dir}, found ${pids.length}`);
    this.containerdPid = Number(pids[0]);
    this.containerd = promisify(new RuntimeServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 }), runtimeMethods);
  }

  runtime(label: Label): Runtime {
    return label === 'berth' ? this.world.runtime : this.containerd;
  }

  namespace(label: Label): string {
    return label === 'berth' ? 'berth.io' : 'k8s.io';
  }

  private config(label: Label): PodSandboxConfig {
    this.seq += 1;
    const name = `steady${this.seq}`;
    const uid = `steady-${label}-${this.seq}-${Date.now()}`;
    // kubelet gives every pod a cgroup of its own (cgroupfs driver): containerd's CRI reads pod
    // stats there and fails without one.
    const linux = LinuxPodSandboxConfig.fromPartial({ cgroupParent: `${cgroupTop}/pod${uid}` });
    return podSandboxConfig(this.world, name, { metadata: { name, namespace: `steady-${label}`, uid, attempt: 0 }, linux });
  }

  async startPods(label: Label, n: number): Promise<string[]> {
    const ids: string[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < n) {
        next += 1;
        const rt = this.runtime(label);
        const config = this.config(label);
        const { podSandboxId } = await rt.runPodSandbox({ config, runtimeHandler: '' });
        ids.push(podSandboxId);
        const c = containerConfig('sleeper', this.world.image('busybox'), { command: ['sleep', '36000'] });
        const { containerId } = await rt.createContainer({ podSandboxId, config: c, sandboxConfig: config });
        await rt.startContainer({ containerId });
      }
    };
    await Promise.all(Array.from({ length: startConcurrency }, worker));
    return ids;
  }

  async removePods(label: Label, ids: string[]): Promise<void> {
    const queue = [...ids];
    const worker = async (): Promise<void> => {
      for (let id = queue.shift(); id; id = queue.shift()) {
        const rt = this.runtime(label);
        await rt.stopPodSandbox({ podSandboxId: id }).catch(() => undefined);
        await rt.removePodSandbox({ podSandboxId: id }).catch((err: unknown) => console.log(`  remove ${id}: ${(err as Error).message}`));
      }
    };
    await Promise.all(Array.from({ length: startConcurrency }, worker));
  }

  private usage(label: Label, shims: number[]): Usage {
    return {
      cri: label === 'berth' ? cpuSeconds(this.world.cri.child.pid!) : 0,
      containerd: cpuSeconds(this.containerdPid),
      shims: shims.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    };
  }

  private async measure<T>(label: Label, fn: () => Promise<T>): Promise<{ usage: Usage & { seconds: number }; result: T }> {
    const shims = shimPids(this.world.containerd.socket, this.namespace(label));
    const before = this.usage(label, shims);
    const t = process.hrtime.bigint();
    const result = await fn();
    const elapsed = Number(process.hrtime.bigint() - t) / 1e9;
    const after = this.usage(label, shims);
    return { usage: { cri: after.cri - before.cri, containerd: after.containerd - before.containerd, shims: after.shims - before.shims, seconds: elapsed }, result };
  }

  /** kubelet's relist every second and its stats loop every 10 s, for `secs` seconds. */
  private async poll(label: Label, secs: number): Promise<Pick<Phase, 'latency' | 'errors'>> {
    const latency = Object.fromEntries(rpcs.map((r) => [r, [] as number[]])) as Record<Rpc, number[]>;
    const errors = Object.fromEntries(rpcs.map((r) => [r, [] as string[]])) as Record<Rpc, string[]>;
    const timed = async (rpc: Rpc, call: () => Promise<unknown>): Promise<void> => {
      const t = process.hrtime.bigint();
      try {
        await call();
        latency[rpc].push(Number(process.hrtime.bigint() - t) / 1e6);
      } catch (err) {
        errors[rpc].push((err as Error).message);
      }
    };
    const rt = this.runtime(label);
    // kubelet's relist asks for the sandboxes, then the containers, one after the other.
    const relist = async (): Promise<void> => {
      await timed('ListPodSandbox', () => rt.listPodSandbox({ filter: undefined }));
      await timed('ListContainers', () => rt.listContainers({ filter: undefined }));
    };
    const stats = async (): Promise<void> => {
      await timed('ListContainerStats', () => rt.listContainerStats({ filter: undefined }));
      await timed('ListPodSandboxStats', () => rt.listPodSandboxStats({ filter: undefined }));
    };
    const start = Date.now();
    const pending: Promise<void>[] = [];
    for (let tick = 0; tick < secs; tick++) {
      const wait = start + tick * 1000 - Date.now();
      if (wait > 0) await sleep(wait);
      pending.push(relist());
      if (tick % 10 === 0) pending.push(stats());
    }
    await sleep(Math.max(0, start + secs * 1000 - Date.now()));
    await Promise.all(pending);
    return { latency, errors };
  }

  async phase(label: Label, pods: number): Promise<Phase> {
    const ids = await this.startPods(label, pods);
    try {
      if (label === 'berth' && profileDir) {
        // Profile only what follows: a berth-cri restarted now, which recovers the pods first.
        await this.world.killCri();
        process.env.BERTH_CRI_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${profileDir}`;
        await this.world.startCri();
        delete process.env.BERTH_CRI_NODE_ARGS;
        for (let i = 0; i < 100 && (await this.world.runtime.listContainers({ filter: undefined })).containers.length < pods; i++) await sleep(100);
      }
      // Let the starts' after-effects (GC, compaction, lazy work) settle before measuring.
      await sleep(3000);
      const idle = await this.measure(label, () => sleep(idleSeconds * 1000));
      const poll = await this.measure(label, () => this.poll(label, seconds));
      const phase: Phase = {
        label,
        pods,
        idle: idle.usage,
        poll: poll.usage,
        rssCri: label === 'berth' ? rssMiB(this.world.cri.child.pid!) : NaN,
        rssContainerd: rssMiB(this.containerdPid),
        ...poll.result,
      };
      if (label === 'berth' && profileDir) {
        // --cpu-prof writes its file when the process exits, which SIGTERM makes it do cleanly.
        const child = this.world.cri.child;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
        await this.world.startCri();
      }
      return phase;
    } finally {
      await this.removePods(label, ids);
    }
  }
}

const perMin = (cpu: number, secs: number): number => (cpu / secs) * 60;

function report(berth: Phase | undefined, ctrd: Phase | undefined): void {
  const pods = (berth ?? ctrd)!.pods;
  console.log(`\n${pods} pods, ${seconds} s of polling (relist every 1 s, stats every 10 s); load average now ${load()}`);
  console.log(`CPU s/min          ${'runtime'.padStart(8)} ${'containerd'.padStart(10)} ${'sum'.padStart(7)} ${'shims'.padStart(7)}   ${'idle sum'.padStart(8)}   RSS MiB (runtime, containerd)`);
  const row = (name: string, p: Phase): number => {
    const s = p.poll.seconds;
    const sum = perMin(p.poll.cri + p.poll.containerd, s);
    const idleSum = perMin(p.idle.cri + p.idle.containerd, p.idle.seconds);
    const rss = p.label === 'berth' ? `${p.rssCri.toFixed(1)}, ${p.rssContainerd.toFixed(1)}` : `-, ${p.rssContainerd.toFixed(1)}`;
    console.log(`${name.padEnd(18)} ${(p.label === 'berth' ? perMin(p.poll.cri, s).toFixed(2) : '-').padStart(8)} ${perMin(p.poll.containerd, s).toFixed(2).padStart(10)} ${sum.toFixed(2).padStart(7)} ${perMin(p.poll.shims, s).toFixed(2).padStart(7)}   ${idleSum.toFixed(2).padStart(8)}   ${rss}`);
    return sum;
  };
  const b = berth ? row('berth-cri', berth) : undefined;
  const c = ctrd ? row("containerd's CRI", ctrd) : undefined;
  if (berth && ctrd && b !== undefined && c !== undefined) {
    const withShims = (p: Phase) => p.poll.cri + p.poll.containerd + p.poll.shims;
    console.log(`ratio (berth-cri + containerd) / containerd-with-CRI: ${(b / c).toFixed(2)}x; with the shims counted on both sides: ${(perMin(withShims(berth), berth.poll.seconds) / perMin(withShims(ctrd), ctrd.poll.seconds)).toFixed(2)}x`);
    if (berth.rssCri) console.log(`RSS: berth-cri ${berth.rssCri.toFixed(1)} MiB vs containerd-with-CRI ${ctrd.rssContainerd.toFixed(1)} MiB (containerd during berth's turn: ${berth.rssContainerd.toFixed(1)} MiB)`);
  }
  console.log(`RPC latency (client side, ms)   ${'berth p50/p99'.padStart(16)} ${'containerd p50/p99'.padStart(20)}   p50 ratio`);
  for (const rpc of rpcs) {
    const cell = (p: Phase | undefined) => (p ? (p.errors[rpc].length ? `${p.errors[rpc].length} errors` : `${median(p.latency[rpc]).toFixed(2)}/${percentile(p.latency[rpc], 99).toFixed(2)}`) : '-');
    const ratio = berth && ctrd && !berth.errors[rpc].length && !ctrd.errors[rpc].length ? `${(median(berth.latency[rpc]) / median(ctrd.latency[rpc])).toFixed(2)}x` : '';
    console.log(`  ${rpc.padEnd(29)} ${cell(berth).padStart(16)} ${cell(ctrd).padStart(20)}   ${ratio}`);
  }
  for (const p of [berth, ctrd]) for (const rpc of rpcs) if (p?.errors[rpc].length) console.log(`  ${p.label} ${rpc} failed: ${p.errors[rpc][0]}`);
}

async function main(): Promise<void> {
  const world = await CriWorld.start({ containerdCri: true, flags: ['--log-level', process.env.BENCH_CRI_LOG_LEVEL ?? 'warn'] });
  try {
    const bench = new Bench(world);
    const containerdImages = promisify(new (await import('../proto/gen/runtime/v1/api.js')).ImageServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure()), ['pullImage'] as const);
    for (const name of ['busybox', 'pause']) {
      const image = { image: world.image(name), annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' };
      if (runtimes.includes('berth')) await world.images.pullImage({ image, auth: undefined, sandboxConfig: undefined });
      if (runtimes.includes('containerd')) await containerdImages.pullImage({ image, auth: undefined, sandboxConfig: undefined });
    }
    console.log(`bench/steady: berth-cri vs containerd's CRI (containerd 1.6), ${runtimes.join(' and ')}; load average at start ${load()}`);
    for (const [i, pods] of podCounts.entries()) {
      const order = i % 2 ? [...runtimes].reverse() : runtimes;
      const phases: Partial<Record<Label, Phase>> = {};
      for (const label of order) phases[label] = await bench.phase(label, pods);
      report(phases.berth, phases.containerd);
    }
    // Server-side handler times, from berth-cri's debug log (which costs CPU: not for the numbers above).
    if (process.env.BENCH_CRI_LOG_LEVEL === 'debug') printStepMedians(world.criLog());
  } finally {
    await world.stop();
    removeCgroups();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
