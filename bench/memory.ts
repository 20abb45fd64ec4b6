import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { stringify } from 'yaml';
import type { ContainerConfig, PodSandboxConfig } from '../proto/gen/runtime/v1/api.js';
import { daemonNodeFlags } from '../lib/node-flags.js';
import { repoRoot } from '../world/cni.js';
import { containerConfig, CriWorld, podSandboxConfig } from '../world/cri.js';
import { FakeKubelet } from '../world/fake-kubelet.js';
import { fakeGpus } from '../world/gpu.js';
import { median, percentile, rssMiB } from './common.js';

// bench/memory: what berth costs a node in memory, side by side in one run on one containerd:
// the five components as separate daemons (berth-cri, berth-csi, berth-gpu on its fake
// backend behind a fake kubelet, berth-overlayd on the file lease store, berth-cnid), then the
// same five in one berthd. RSS after BENCH_IDLE_S seconds idle (default 60), then berthd with
// BENCH_PODS pods running (default 50), and GPU Allocate latency inside berthd while the other
// components sit in the same process. The overlay runs in a network namespace of its own
// (a dummy underlay), so the host's network is never touched. BENCH_NODE_FLAGS adds Node/V8
// flags to every daemon (e.g. "--max-semi-space-size=1"). Asserts nothing.

const idleMs = Number(process.env.BENCH_IDLE_S ?? 60) * 1000;
const podCount = Number(process.env.BENCH_PODS ?? 50);
// The daemons' flags as the units give them (lib/node-flags.ts), unless BENCH_NODE_FLAGS says otherwise.
const nodeFlags = process.env.BENCH_NODE_FLAGS !== undefined ? process.env.BENCH_NODE_FLAGS.split(' ').filter(Boolean) : [...daemonNodeFlags];
const netns = `berth-bench-mem-${process.pid}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ok: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A daemon with its output kept (for ports and errors); `inNetns` runs it in the bench's namespace. */
function daemon(bin: string, args: string[], inNetns = false, env: NodeJS.ProcessEnv = {}): { proc: ChildProcess; output: () => string } {
  const argv = [...nodeFlags, join(repoRoot, bin), ...args];
  // nsenter, not `ip netns exec`: that one also gives the process a mount namespace of its own,
  // where berth-cri's mounts (pod netns, shm) would be invisible to containerd and runc.
  const proc = inNetns ? spawn('nsenter', [`--net=/run/netns/${netns}`, process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }) : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  const keep = (b: Buffer) => void (out = (out + b.toString()).slice(-200_000));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  return { proc, output: () => out };
}

async function stopDaemon(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  const world = await CriWorld.start({ flags: ['--log-level', 'warn'] });
  const dir = mkdtempSync('/var/lib/berth-bench-mem-');
  const kubeletDir = join(dir, 'device-plugins');
  const fakeDir = join(dir, 'fake');
  mkdirSync(kubeletDir, { recursive: true });
  mkdirSync(fakeDir, { recursive: true });
  writeFileSync(join(fakeDir, 'gpus.json'), JSON.stringify(fakeGpus(8)));
  writeFileSync(join(fakeDir, 'events'), '');
  const kubelet = new FakeKubelet(kubeletDir);
  await kubelet.start();
  const networkConfig = join(dir, 'net-conf.json');
  writeFileSync(networkConfig, JSON.stringify({ Network: '10.250.0.0/16', SubnetLen: 24, Backend: { Type: 'vxlan', VNI: 77 } }));
  const settings = {
    csi: { nodeId: 'bench-node', root: join(dir, 'volumes'), endpoint: `unix://${join(dir, 'csi.sock')}`, directorySizeEnforcement: 'unenforced' },
    gpu: { backend: 'fake', fakeDir, kubeletDir, cdiSpecDir: join(dir, 'cdi') },
    overlay: { leaseStore: 'file', networkConfig, leaseFile: join(dir, 'lease.json'), subnetFile: join(dir, 'subnet.env') },
    cnid: { socket: join(dir, 'cni.sock') },
  };
  const started: ChildProcess[] = [];
  try {
    // The overlay's node: a namespace with an underlay (a veth pair inside it) and a default route.
    execFileSync('ip', ['netns', 'add', netns]);
    const inNs = (...args: string[]) => execFileSync('ip', ['-n', netns, ...args]);
    inNs('link', 'set', 'lo', 'up');
    inNs('link', 'add', 'underlay0', 'type', 'veth', 'peer', 'name', 'underlay1');
    inNs('addr', 'add', '10.249.0.2/24', 'dev', 'underlay0');
    inNs('link', 'set', 'underlay0', 'up');
    inNs('link', 'set', 'underlay1', 'up');
    inNs('route', 'add', 'default', 'via', '10.249.0.1');
    // The images come from the world's registry on the host's loopback, which berthd in its
    // namespace cannot reach: pulled now, they are in containerd for both.
    for (const name of ['busybox', 'pause']) {
      await world.images.pullImage({ image: { image: world.image(name), annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' }, auth: undefined, sandboxConfig: undefined });
    }
    // 1. The separate daemons (berth-cri is the world's own).
    writeFileSync(join(dir, 'csi.yaml'), stringify(settings.csi));
    writeFileSync(join(dir, 'gpu.yaml'), stringify({ ...settings.gpu, metricsAddr: '' }));
    writeFileSync(join(dir, 'overlay.yaml'), stringify({ ...settings.overlay, healthzAddr: '' }));
    const separate = {
      'berth-cri': { proc: world.cri.child },
      'berth-csi': daemon('dist/bin/berth-csi', ['--config', join(dir, 'csi.yaml')]),
      'berth-gpu': daemon('dist/bin/berth-gpu', ['--config', join(dir, 'gpu.yaml')]),
      'berth-overlayd': daemon('dist/bin/berth-overlayd', ['--config', join(dir, 'overlay.yaml')], true),
      'berth-cnid': daemon('dist/cnid/berth-cnid', ['--socket', settings.cnid.socket]),
    };
    for (const d of Object.values(separate)) started.push(d.proc);
    await waitFor('the separate daemons', () => existsSync(join(dir, 'csi.sock')) && existsSync(join(dir, 'subnet.env')) && existsSync(settings.cnid.socket) && kubelet.registrations.length > 0);
    console.log(`bench/memory: RSS after ${idleMs / 1000} s idle${nodeFlags.length ? ` (node flags: ${nodeFlags.join(' ')})` : ''}`);
    await sleep(idleMs);
    let total = 0;
    for (const [name, d] of Object.entries(separate)) {
      const rss = rssMiB(d.proc.pid!);
      total += rss;
      console.log(`  ${name.padEnd(16)} ${rss.toFixed(1).padStart(7)} MiB`);
    }
    console.log(`  ${'five daemons'.padEnd(16)} ${total.toFixed(1).padStart(7)} MiB`);
    const containerdRss = rssMiB(Number(execFileSync('pgrep', ['-f', `containerd --config ${world.containerd.dir}`], { encoding: 'utf8' }).trim().split('\n')[0]));
    for (const [name, d] of Object.entries(separate)) if (name !== 'berth-cri') await stopDaemon(d.proc);
    await world.killCri();
    rmSync(settings.cnid.socket, { force: true });

    // 2. The same five in one berthd, berth-cri's settings taken from the world's command line.
    const criArgs = world.cri.child.spawnargs;
    const flag = (name: string) => criArgs[criArgs.indexOf(name) + 1]!;
    const cri = {
      listen: `unix://${world.cri.socket}`,
      containerd: world.containerd.socket,
      root: flag('--root'),
      state: flag('--state'),
      registryConfigDir: flag('--registry-config-dir'),
      cniConfDir: flag('--cni-conf-dir'),
      cniBinDir: flag('--cni-bin-dir').split(':'),
      cniCacheDir: flag('--cni-cache-dir'),
      sandboxImage: flag('--sandbox-image'),
      ...(readFileSync(flag('--config'), 'utf8').trim() ? (await import('yaml')).parse(readFileSync(flag('--config'), 'utf8')) : {}),
    };
    const berthdFile = join(dir, 'berth.yaml');
    // berthd itself logs at info (its 'berthd running' line says what started), the components at warn.
    const quiet = { logLevel: 'warn' };
    writeFileSync(berthdFile, stringify({ logLevel: 'info', http: '127.0.0.1:0', cri: { ...cri, ...quiet }, csi: { ...settings.csi, ...quiet }, gpu: { ...settings.gpu, ...quiet }, overlay: { ...settings.overlay, ...quiet }, cnid: settings.cnid }));
    const registrations = kubelet.registrations.length;
    const berthd = daemon('dist/bin/berthd', ['--config', berthdFile], true, { BERTH_CNI_SOCKET: settings.cnid.socket });
    started.push(berthd.proc);
    rmSync(settings.overlay.subnetFile, { force: true });
    await waitFor('berthd', () => existsSync(world.cri.socket) && existsSync(join(dir, 'csi.sock')) && existsSync(settings.cnid.socket) && existsSync(settings.overlay.subnetFile) && kubelet.registrations.length > registrations);
    const running = /"status":"([^"]*)","msg":"berthd running"/;
    await waitFor('berthd to say it runs', () => running.test(berthd.output()));
    const status = running.exec(berthd.output())![1]!;
    if (status.split(', ').length !== 5 || !status.split(', ').every((s) => / running( \(not ready\))?$/.test(s))) throw new Error(`berthd did not start every component: ${status}\n${berthd.output().slice(-3000)}`);
    await sleep(idleMs);
    const idle = rssMiB(berthd.proc.pid!);
    console.log(`  ${'berthd (all five)'.padEnd(16)} ${idle.toFixed(1).padStart(7)} MiB   ${(idle / total).toFixed(2)}x of the five daemons`);
    console.log(`  ${'containerd'.padEnd(16)} ${containerdRss.toFixed(1).padStart(7)} MiB   (the peer's runtime, needed by both)`);

    // GPU Allocate with the other components idle in the same process.
    const resource = 'nvidia.com/gpu';
    const devices = (await kubelet.waitForList(resource, (d) => d.length === 8)).devices.map((d) => d.ID);
    // The client is this process, which also holds the whole test world: a scavenge of its own in
    // the middle of a call (10-30 ms here, with Node's default young generation) is no latency of
    // berthd's, and kubelet (Go) has no such pauses. Calls that overlapped one of this process's
    // GCs are left out of the second figure, and counted; the first 200 calls only warm up.
    const gcSpans: { start: number; end: number }[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcSpans.push({ start: e.startTime, end: e.startTime + e.duration });
    });
    observer.observe({ entryTypes: ['gc'] });
    const calls: { start: number; end: number }[] = [];
    for (let i = 0; i < 700; i++) {
      const start = performance.now();
      await kubelet.allocate(resource, [devices]);
      if (i >= 200) calls.push({ start, end: performance.now() });
    }
    await sleep(100);
    observer.disconnect();
    const times = calls.map((c) => c.end - c.start);
    const clean = calls.filter((c) => !gcSpans.some((g) => g.start < c.end && g.end > c.start)).map((c) => c.end - c.start);
    console.log(
      `  GPU Allocate of 8 devices in berthd, 500 calls after 200 to warm up: p50 ${median(times).toFixed(2)} ms, p99 ${percentile(times, 99).toFixed(2)} ms; ` +
        `without the ${times.length - clean.length} calls during a GC of the bench's own: p99 ${percentile(clean, 99).toFixed(2)} ms (target p99 < 5 ms)`,
    );

    // 3. berthd with pods running (CNI through berthd's own cnid: the shims find its socket).
    const pods: string[] = [];
    for (let i = 0; i < podCount; i++) {
      const config: PodSandboxConfig = podSandboxConfig(world, `mem-${i}`);
      const { podSandboxId } = await world.runtime.runPodSandbox({ config, runtimeHandler: '' });
      const c: ContainerConfig = containerConfig(`sleeper-${i}`, world.image('busybox'), { command: ['sleep', '3600'] });
      const { containerId } = await world.runtime.createContainer({ podSandboxId, config: c, sandboxConfig: config });
      await world.runtime.startContainer({ containerId });
      pods.push(podSandboxId);
    }
    await sleep(Math.min(idleMs, 10_000));
    const withPods = rssMiB(berthd.proc.pid!);
    console.log(`  ${`berthd, ${podCount} pods`.padEnd(16)} ${withPods.toFixed(1).padStart(7)} MiB`);
    for (const id of pods) await world.runtime.removePodSandbox({ podSandboxId: id });
    await stopDaemon(berthd.proc);
  } finally {
    for (const p of started) await stopDaemon(p).catch(() => undefined);
    await kubelet.stop();
    // berthd's CRI is gone: the world's stop restarts nothing, it cleans what the pods left.
    await world.stop();
    if (existsSync(`/run/netns/${netns}`)) execFileSync('ip', ['netns', 'del', netns]);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
