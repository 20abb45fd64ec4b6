import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniRunner, parseNetworkList, type NetworkList, type RuntimeConf } from '../lib/cni/runner.js';
import type { CniResult } from '../lib/cni/types.js';
import { BerthdWorld } from '../world/berthd.js';

// bench/cni: ADD and DEL of loopback + bridge + host-local for N namespaces, sequentially and
// 8-way concurrently, with berth's plugins standalone (a Node start per call), berth's plugins
// served by berth-cnid, and the reference plugins (Debian's containernetworking-plugins in
// /usr/lib/cni), same configuration, same run. Prints medians, p90 and each berth mode's ratio
// to the reference. A benchmark, not a test: it asserts nothing.
// BENCH_CNI_DAEMON=berthd serves the +cnid column from berthd (csi, gpu on its fake backend,
// overlay on the file store and cnid in one process) instead of a berth-cnid of its own.

const count = Number(process.env.BENCH_NAMESPACES ?? 50);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const referenceDir = process.env.BENCH_REFERENCE_DIR ?? '/usr/lib/cni';
const here = dirname(fileURLToPath(import.meta.url));
const berthDir = [resolve(here, '../cni'), resolve(here, '../dist/cni')].find((d) => existsSync(`${d}/berth-bridge`))!;
const cnidBundle = resolve(berthDir, '../cnid/berth-cnid');
const workDir = mkdtempSync(join(tmpdir(), 'berth-bench-'));
// Standalone runs point the shim at a socket nobody listens on.
const noDaemonSocket = join(workDir, 'absent.sock');
const cnidSocket = join(workDir, 'cni.sock');
const daemonKind = process.env.BENCH_CNI_DAEMON === 'berthd' ? 'berthd' : 'berth-cnid';

interface Impl {
  label: string;
  dir: string;
  list: NetworkList;
  prefix: string;
  /** BERTH_CNI_SOCKET for the plugin calls (berth only). */
  socket?: string;
}

function conflist(name: string, bridge: string, subnet: string, types: { lo: string; bridge: string; ipam: string }): NetworkList {
  return parseNetworkList(JSON.stringify({
    cniVersion: '1.0.0',
    name,
    plugins: [
      { type: types.lo },
      {
        type: types.bridge,
        bridge,
        isGateway: true,
        ipMasq: true,
        ipam: { type: types.ipam, ranges: [[{ subnet }]], dataDir: `/run/berth-bench/${name}` },
      },
    ],
  }));
}

const berthTypes = { lo: 'berth-loopback', bridge: 'berth-bridge', ipam: 'berth-host-local' };
const standalone: Impl = { label: 'berth', dir: berthDir, prefix: 'bb', socket: noDaemonSocket, list: conflist('bench-berth', 'benchb0', '10.251.0.0/16', berthTypes) };
const served: Impl = { label: 'berth+cnid', dir: berthDir, prefix: 'bd', socket: cnidSocket, list: conflist('bench-cnid', 'benchd0', '10.253.0.0/16', berthTypes) };
const reference: Impl = { label: 'reference', dir: referenceDir, prefix: 'br', list: conflist('bench-ref', 'benchr0', '10.252.0.0/16', { lo: 'loopback', bridge: 'bridge', ipam: 'host-local' }) };

/** True when dist/cni holds the C shim (an ELF file) rather than the JS plugins themselves. */
function berthUsesShim(): boolean {
  const fd = openSync(join(berthDir, 'berth-bridge'), 'r');
  try {
    const head = Buffer.alloc(4);
    readSync(fd, head, 0, 4, 0);
    return head.toString('latin1') === '\x7fELF';
  } finally {
    closeSync(fd);
  }
}

function connects(path: string): Promise<boolean> {
  return new Promise((ok) => {
    const s = createConnection(path);
    s.once('connect', () => (s.destroy(), ok(true)));
    s.once('error', () => ok(false));
  });
}

/** Start berth-cnid (or berthd with cnid among its components) on the bench's socket; resolves once it accepts connections. */
async function startDaemon(): Promise<{ stop(): Promise<void> }> {
  if (daemonKind === 'berthd') {
    const world = await BerthdWorld.start();
    try {
      const all = ['csi', 'gpu', 'overlay', 'cnid'] as const;
      // berthd at info (the world waits for its 'serving /metrics' line), the components at warn.
      const doc = world.document(all, { logLevel: 'info' });
      for (const name of all) doc[name] = { ...(doc[name] as Record<string, unknown>), logLevel: 'warn' };
      doc.cnid = { ...(doc.cnid as Record<string, unknown>), socket: cnidSocket };
      const berthd = await world.berthd(doc);
      await berthd.waitReady(undefined, 60_000);
    } catch (err) {
      await world.stop();
      throw err;
    }
    return { stop: () => world.stop() };
  }
  const daemon = spawn(process.execPath, [cnidBundle, '--socket', cnidSocket], { stdio: ['ignore', 'ignore', 'inherit'] });
  const until = Date.now() + 15_000;
  while (!(await connects(cnidSocket))) {
    if (daemon.exitCode !== null || Date.now() > until) throw new Error(`berth-cnid did not start (${cnidBundle})`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    async stop() {
      if (daemon.exitCode !== null) return;
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    },
  };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      out.push(await fn(item));
    }
  }));
  return out;
}

async function phase(impl: Impl, width: number): Promise<{ add: number[]; del: number[] }> {
  // CniRunner passes its own environment to the plugins.
  if (impl.socket) process.env.BERTH_CNI_SOCKET = impl.socket;
  else delete process.env.BERTH_CNI_SOCKET;
  const runner = new CniRunner([impl.dir]);
  const names = Array.from({ length: count }, (_, i) => `${impl.prefix}${width}-${i}`);
  for (const n of names) execFileSync('ip', ['netns', 'add', n]);
  const results = new Map<string, CniResult | undefined>();
  const rt = (n: string): RuntimeConf => ({ containerId: n, netns: `/run/netns/${n}`, ifname: 'eth0' });
  try {
    const add = await pool(names, width, (n) => timed(async () => results.set(n, await runner.add(impl.list, rt(n)))));
    const del = await pool(names, width, (n) => timed(() => runner.del(impl.list, rt(n), results.get(n))));
    return { add, del };
  } finally {
    for (const n of names) spawnSync('ip', ['netns', 'del', n]);
  }
}

const f = (x: number, w = 7) => (Number.isNaN(x) ? '-' : x.toFixed(1)).padStart(w);
const p50 = (xs: number[]) => quantile([...xs].sort((x, y) => x - y), 0.5);
const p90 = (xs: number[]) => quantile([...xs].sort((x, y) => x - y), 0.9);
const ratio = (b: number[], r: number[]) => (b.length === 0 ? '-' : (p50(b) / p50(r)).toFixed(2) + 'x').padStart(9);

/** One line: p50/p90 per implementation, then each berth mode's p50 over the reference's. */
function row(label: string, alone: number[], cnid: number[], ref: number[]): string {
  const cols = [alone, cnid, ref].map((xs) => `${f(p50(xs))} ${f(p90(xs))}`).join('  | ');
  return `${label.padEnd(20)} ${cols}  | ${ratio(alone, ref)} ${ratio(cnid, ref)}`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  for (const impl of [standalone, reference]) {
    if (!existsSync(`${impl.dir}/${impl.list.plugins[1]!.type as string}`)) throw new Error(`${impl.label} plugins not found in ${impl.dir}`);
  }
  const withDaemon = berthUsesShim() && existsSync(cnidBundle);
  // Each plugin start pays for a CA bundle if this is set (~50 ms); runtimes do not set it.
  delete process.env.NODE_EXTRA_CA_CERTS;
  console.log(`bench/cni: ${count} namespaces, ADD/DEL of loopback + bridge + host-local; berth ${berthDir} vs reference ${referenceDir}`);
  if (!withDaemon) console.log('(dist/cni holds no CNI shim (built without a C compiler?): no berth-cnid column)');
  const lines: string[] = [];
  const none = { add: [] as number[], del: [] as number[] };
  try {
    for (const width of [1, concurrency]) {
      const b = await phase(standalone, width);
      let d = none;
      if (withDaemon) {
        const daemon = await startDaemon();
        try {
          d = await phase(served, width);
        } finally {
          await daemon.stop();
        }
      }
      const r = await phase(reference, width);
      const mode = width === 1 ? 'sequential' : `${width}-way concurrent`;
      lines.push(row(`ADD ${mode}`, b.add, d.add, r.add), row(`DEL ${mode}`, b.del, d.del, r.del));
    }
  } finally {
    for (const impl of [standalone, served, reference]) spawnSync('ip', ['link', 'del', impl.list.plugins[1]!.bridge as string]);
    rmSync('/run/berth-bench', { recursive: true, force: true });
    rmSync(workDir, { recursive: true, force: true });
  }
  const head = (name: string) => `${(name + ' p50').padStart(7)} ${'p90'.padStart(7)}`;
  console.log(`\n${'ms'.padEnd(20)} ${head('berth')}  | ${head('+cnid')}  | ${head('ref')}  | ${'berth/ref'.padStart(9)} ${'cnid/ref'.padStart(9)}`);
  for (const l of lines) console.log(l);
  console.log(`\nberth: standalone plugins (a Node start per call); +cnid: the same plugins served by ${daemonKind === 'berthd' ? 'berthd (csi, gpu, overlay, cnid)' : 'berth-cnid'}; ratios are p50 over the reference p50`);
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(`bench/cni: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
