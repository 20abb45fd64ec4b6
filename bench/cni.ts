import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniRunner, parseNetworkList, type NetworkList, type RuntimeConf } from '../lib/cni/runner.js';
import type { CniResult } from '../lib/cni/types.js';

// bench/cni: ADD and DEL of loopback + bridge + host-local for N namespaces, sequentially and
// 8-way concurrently, with berth's plugins and the reference plugins (Debian's
// containernetworking-plugins in /usr/lib/cni), same configuration, same run. Prints medians,
// p90 and berth/reference ratios. A benchmark, not a test: it asserts nothing.

const count = Number(process.env.BENCH_NAMESPACES ?? 50);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const referenceDir = process.env.BENCH_REFERENCE_DIR ?? '/usr/lib/cni';
const here = dirname(fileURLToPath(import.meta.url));
const berthDir = [resolve(here, '../cni'), resolve(here, '../dist/cni')].find((d) => existsSync(`${d}/berth-bridge`))!;

interface Impl {
  label: string;
  dir: string;
  list: NetworkList;
  prefix: string;
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

const impls: Impl[] = [
  { label: 'berth', dir: berthDir, prefix: 'bb', list: conflist('bench-berth', 'benchb0', '10.251.0.0/16', { lo: 'berth-loopback', bridge: 'berth-bridge', ipam: 'berth-host-local' }) },
  { label: 'reference', dir: referenceDir, prefix: 'br', list: conflist('bench-ref', 'benchr0', '10.252.0.0/16', { lo: 'loopback', bridge: 'bridge', ipam: 'host-local' }) },
];

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

function row(label: string, b: number[], r: number[]): string {
  const sb = [...b].sort((x, y) => x - y);
  const sr = [...r].sort((x, y) => x - y);
  const f = (x: number) => x.toFixed(1).padStart(7);
  return `${label.padEnd(22)} ${f(quantile(sb, 0.5))} ${f(quantile(sb, 0.9))}   ${f(quantile(sr, 0.5))} ${f(quantile(sr, 0.9))}   ${(quantile(sb, 0.5) / quantile(sr, 0.5)).toFixed(2).padStart(6)}x`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root');
  for (const impl of impls) {
    if (!existsSync(`${impl.dir}/${impl.list.plugins[1]!.type as string}`)) throw new Error(`${impl.label} plugins not found in ${impl.dir}`);
  }
  // Each plugin start pays for a CA bundle if this is set (~50 ms); runtimes do not set it.
  delete process.env.NODE_EXTRA_CA_CERTS;
  console.log(`bench/cni: ${count} namespaces, ADD/DEL of loopback + bridge + host-local; berth ${berthDir} vs reference ${referenceDir}`);
  const lines: string[] = [];
  for (const width of [1, concurrency]) {
    const [b, r] = [await phase(impls[0]!, width), await phase(impls[1]!, width)];
    const mode = width === 1 ? 'sequential' : `${width}-way concurrent`;
    lines.push(row(`ADD ${mode}`, b.add, r.add), row(`DEL ${mode}`, b.del, r.del));
  }
  console.log(`\n${'ms'.padEnd(22)} ${'berth p50'.padStart(7)} ${'p90'.padStart(7)}   ${'ref p50'.padStart(7)} ${'p90'.padStart(7)}   ratio (p50 berth/ref)`);
  for (const l of lines) console.log(l);
  for (const impl of impls) {
    spawnSync('ip', ['link', 'del', impl.list.plugins[1]!.bridge as string]);
  }
  rmSync('/run/berth-bench', { recursive: true, force: true });
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(`bench/cni: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
