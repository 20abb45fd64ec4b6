import { credentials } from '@grpc/grpc-js';
import { forwardPort, remoteCommand, spdyConnect } from '../lib/stream/client.js';
import { ImageServiceClient, RuntimeServiceClient, type ContainerConfig } from '../proto/gen/runtime/v1/api.js';
import { median, printStepMedians } from './common.js';
import { BerthdWorld } from '../world/berthd.js';
import { containerConfig, CriWorld, imageSpec, podSandboxConfig, promisify, runtimeMethods } from '../world/cri.js';

// bench/stream: CRI streaming, berth-cri against containerd's CRI plugin on one private
// containerd. Both are driven by the same client (berth's SPDY client, what the e2e tests use),
// so the difference is the server. Two numbers:
// - exec round trip: Exec RPC, the SPDY upgrade, `true` run in the container, the v4 status back,
//   median of N alternating runs;
// - port-forward throughput: a 100 MB file served by busybox httpd in a pod, fetched through a
//   port-forward stream, median MB/s of a few transfers after two warm-up transfers each.
// Prints medians and berth's ratio. Asserts nothing.
// BENCH_STREAM_BERTHD=1 serves berth's side from berthd with all five components (cri, csi, gpu
// on its fake backend, overlay on the file store, cnid) instead of a berth-cri of its own: the
// same comparison for a node that runs berthd.

const execRounds = Number(process.env.BENCH_EXEC ?? 50);
const transfers = Number(process.env.BENCH_TRANSFERS ?? 5);
const sizeMB = Number(process.env.BENCH_MB ?? 100);
const inBerthd = process.env.BENCH_STREAM_BERTHD === '1';
type Runtime = ReturnType<typeof promisify<InstanceType<typeof RuntimeServiceClient>>>;

/** A pod with one container that serves /tmp (holding a `sizeMB` file) on port 8080. */
async function startServer(world: CriWorld, runtime: Runtime, label: string): Promise<{ podId: string; containerId: string }> {
  const config = podSandboxConfig(world, `stream-${label}`, { metadata: { name: `stream-${label}`, namespace: `bench-${label}`, uid: `stream-${label}-${Date.now()}`, attempt: 0 } });
  const { podSandboxId } = await runtime.runPodSandbox({ config, runtimeHandler: '' });
  const container: ContainerConfig = containerConfig('web', world.image('busybox'), {
    command: ['sh', '-c', `dd if=/dev/urandom of=/tmp/big bs=1M count=${sizeMB} 2>/dev/null && touch /tmp/ready && exec httpd -f -p 8080 -h /tmp`],
  });
  const { containerId } = await runtime.createContainer({ podSandboxId, config: container, sandboxConfig: config });
  await runtime.startContainer({ containerId });
  for (let i = 0; i < 600; i++) {
    const r = await runtime.execSync({ containerId, cmd: ['test', '-e', '/tmp/ready'], timeout: 10n });
    if (r.exitCode === 0) return { podId: podSandboxId, containerId };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${label}: the server pod never got ready`);
}

async function execOnce(runtime: Runtime, containerId: string): Promise<number> {
  const t = process.hrtime.bigint();
  const { url } = await runtime.exec({ containerId, cmd: ['true'], stdin: false, stdout: true, stderr: true, tty: false });
  const r = await remoteCommand(url, {}).catch((err: unknown) => {
    throw new Error(`exec via ${url}: ${err instanceof Error ? err.message : String(err)}`);
  });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.exitCode !== 0) throw new Error(`exec true: ${r.status}`);
  return ms;
}

/** Fetch the big file through a port-forward stream; MB/s over the whole request. */
async function transferOnce(runtime: Runtime, podId: string): Promise<number> {
  const t = process.hrtime.bigint();
  const { url } = await runtime.portForward({ podSandboxId: podId, port: [8080] });
  const { session } = await spdyConnect(url, ['portforward.k8s.io']).catch((err: unknown) => {
    throw new Error(`port-forward via ${url}: ${err instanceof Error ? err.message : String(err)}`);
  });
  try {
    const { data, error } = forwardPort(session, 8080, 1);
    error.on('data', (d: Buffer) => process.stderr.write(`port-forward error: ${d.toString()}\n`));
    let bytes = 0;
    data.on('data', (d: Buffer) => (bytes += d.length));
    await data.replied.catch((err: unknown) => {
      throw new Error(`port-forward via ${url}: ${err instanceof Error ? err.message : String(err)}`);
    });
    data.end('GET /big HTTP/1.0\r\n\r\n');
    await new Promise((resolve, reject) => {
      data.on('end', resolve);
      data.on('error', reject);
    });
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    if (bytes < sizeMB * 1024 * 1024) throw new Error(`port-forward: got ${bytes} bytes, wanted ${sizeMB} MiB`);
    return bytes / 1e6 / seconds;
  } finally {
    session.close(true);
  }
}

async function main(): Promise<void> {
  const world = await CriWorld.start({ containerdCri: true, berthCri: !inBerthd, flags: ['--log-level', process.env.BENCH_CRI_LOG_LEVEL ?? 'warn'] });
  let berthdWorld: BerthdWorld | undefined;
  try {
    if (inBerthd) {
      berthdWorld = await BerthdWorld.start({ cri: world });
      const all = ['cri', 'csi', 'gpu', 'overlay', 'cnid'] as const;
      // berthd at info (the world waits for its 'serving /metrics' line), the components at warn.
      const doc = berthdWorld.document(all, { logLevel: 'info' });
      for (const name of all) doc[name] = { ...(doc[name] as Record<string, unknown>), logLevel: process.env.BENCH_CRI_LOG_LEVEL ?? 'warn' };
      const berthd = await berthdWorld.berthd(doc);
      await berthd.waitReady(undefined, 60_000);
      world.connect(berthdWorld.socketOf('cri'));
    }
    const containerd = promisify(new RuntimeServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure()), runtimeMethods);
    const runtimes: [string, Runtime][] = [['berth', world.runtime], ['containerd', containerd]];
    const containerdImages = promisify(new ImageServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure()), ['pullImage'] as const);
    for (const name of ['busybox', 'pause']) {
      await world.images.pullImage({ image: imageSpec(world.image(name)), auth: undefined, sandboxConfig: undefined });
      await containerdImages.pullImage({ image: imageSpec(world.image(name)), auth: undefined, sandboxConfig: undefined });
    }
    const servers = new Map<string, { podId: string; containerId: string }>();
    for (const [label, runtime] of runtimes) servers.set(label, await startServer(world, runtime, label));

    const exec = new Map<string, number[]>(runtimes.map(([l]) => [l, []]));
    for (const [label, runtime] of runtimes) await execOnce(runtime, servers.get(label)!.containerId); // warm-up
    for (let i = 0; i < execRounds; i++) {
      for (const [label, runtime] of i % 2 ? [...runtimes].reverse() : runtimes) exec.get(label)!.push(await execOnce(runtime, servers.get(label)!.containerId));
    }
    // Warm-up transfers, not counted: a long-running berth-cri has its data path compiled by
    // V8's JIT long before a big transfer; the first few through a fresh process run slower.
    for (let i = 0; i < 2; i++) for (const [label, runtime] of runtimes) await transferOnce(runtime, servers.get(label)!.podId);
    const throughput = new Map<string, number[]>(runtimes.map(([l]) => [l, []]));
    for (let i = 0; i < transfers; i++) {
      for (const [label, runtime] of i % 2 ? [...runtimes].reverse() : runtimes) throughput.get(label)!.push(await transferOnce(runtime, servers.get(label)!.podId));
    }

    console.log(`bench/stream: ${inBerthd ? 'berthd (cri, csi, gpu, overlay, cnid)' : 'berth-cri'} vs containerd's CRI plugin, same SPDY client`);
    console.log(`${'measure'.padEnd(34)} ${'berth'.padStart(8)} ${'containerd'.padStart(11)} ${'ratio'.padStart(7)}`);
    const row = (name: string, b: number, c: number): void => console.log(`${name.padEnd(34)} ${b.toFixed(1).padStart(8)} ${c.toFixed(1).padStart(11)} ${(b / c).toFixed(2).padStart(7)}x`);
    row(`exec true round trip, ms (p50 of ${execRounds})`, median(exec.get('berth')!), median(exec.get('containerd')!));
    row(`port-forward ${sizeMB} MB, MB/s (p50 of ${transfers})`, median(throughput.get('berth')!), median(throughput.get('containerd')!));
    if (process.env.BENCH_CRI_LOG_LEVEL === 'debug' && !inBerthd) printStepMedians(world.criLog());
    for (const [label, runtime] of runtimes) await runtime.removePodSandbox({ podSandboxId: servers.get(label)!.podId });
    if (process.env.BERTH_CRI_NODE_ARGS && !inBerthd) {
      // A clean exit, so a --cpu-prof among those node flags gets written.
      world.cri.child.kill('SIGTERM');
      await new Promise((resolve) => world.cri.child.once('exit', resolve));
    }
  } catch (err) {
    if (!inBerthd) console.error(`berth-cri log, last lines:\n${world.criLog().split('\n').slice(-15).join('\n')}`);
    throw err;
  } finally {
    await berthdWorld?.stop();
    await world.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
