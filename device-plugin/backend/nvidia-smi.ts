import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { BerthError } from '../../lib/errors.js';
import { run } from '../../lib/exec.js';
import type { Gpu, GpuBackend, GpuTopology, HealthEvent, LinkKind } from './types.js';
import type { BackendLog } from './fake.js';

// A GPU backend over the nvidia-smi command line, for hosts with the driver but without NVML
// bindings. Discovery and topology come from nvidia-smi's CSV and `topo -m` outputs (parsed by
// the pure functions below); Xid errors, which nvidia-smi cannot report, from the kernel log.

export interface NvidiaSmiOptions {
  /** The nvidia-smi program: a name looked up on env.PATH, or a path. */
  binary?: string;
  env?: NodeJS.ProcessEnv;
  log?: BackendLog;
  /** Roots for tests: where /sys and /dev are. */
  sysRoot?: string;
  devRoot?: string;
  /** The program that follows the kernel log (util-linux dmesg, 2.36+ for --follow-new). */
  dmesgBinary?: string;
  eccPollMs?: number;
}

/** One row of `nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id`. */
export interface QueriedGpu {
  index: number;
  uuid: string;
  name: string;
  memoryMiB: number;
  pciBusId: string;
}

export const queryGpuArgs = ['--query-gpu=index,uuid,name,memory.total,pci.bus_id', '--format=csv,noheader,nounits'];
export const queryEccArgs = ['--query-gpu=uuid,ecc.errors.uncorrected.volatile.total', '--format=csv,noheader,nounits'];

/** Parse query-gpu CSV. The name may itself contain ", ", so it is whatever lies between uuid and memory. */
export function parseQueryGpu(csv: string): QueriedGpu[] {
  return csvLines(csv).map((line) => {
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length < 5) throw new BerthError('decode', `nvidia-smi --query-gpu: expected 5 fields in ${JSON.stringify(line)}`);
    const [index, uuid] = fields;
    const memory = fields[fields.length - 2];
    const pciBusId = fields[fields.length - 1];
    const name = fields.slice(2, -2).join(', ');
    if (!/^\d+$/.test(index ?? '')) throw new BerthError('decode', `nvidia-smi --query-gpu: index ${JSON.stringify(index)} is not a number in ${JSON.stringify(line)}`);
    if (!uuid?.startsWith('GPU-')) throw new BerthError('decode', `nvidia-smi --query-gpu: uuid ${JSON.stringify(uuid)} does not start with GPU- in ${JSON.stringify(line)}`);
    if (!/^\d+$/.test(memory ?? '')) throw new BerthError('decode', `nvidia-smi --query-gpu: memory.total ${JSON.stringify(memory)} is not a number of MiB in ${JSON.stringify(line)}`);
    if (!pciBusId || pciAddress(pciBusId) === undefined) throw new BerthError('decode', `nvidia-smi --query-gpu: pci.bus_id ${JSON.stringify(pciBusId)} is not domain:bus:device.function`);
    return { index: Number(index), uuid, name, memoryMiB: Number(memory), pciBusId };
  });
}

/** `ecc.errors.uncorrected.volatile.total` per UUID; undefined where ECC is off or unsupported ([N/A]). */
export function parseEccCounts(csv: string): Map<string, number | undefined> {
  const counts = new Map<string, number | undefined>();
  for (const line of csvLines(csv)) {
    const [uuid, count] = line.split(',').map((f) => f.trim());
    if (!uuid?.startsWith('GPU-') || count === undefined) throw new BerthError('decode', `nvidia-smi ecc query: cannot parse ${JSON.stringify(line)}`);
    counts.set(uuid, /^\d+$/.test(count) ? Number(count) : undefined);
  }
  return counts;
}

/**
 * sysfs's PCI address for nvidia-smi's bus id: 00000000:3B:00.0 → 0000:3b:00.0 (4-hex domain,
 * lowercase). Without the function part (as Xid lines print it) the result has none either.
 */
export function pciAddress(busId: string): string | undefined {
  const m = /^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})(\.[0-7])?$/.exec(busId.trim());
  if (!m) return undefined;
  const domain = m[1]!.slice(-4).padStart(4, '0');
  return `${domain}:${m[2]}:${m[3]}${m[4] ?? ''}`.toLowerCase();
}

/**
 * An Xid line of the kernel log, in the forms the driver has printed:
 *   NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
 *   NVRM: Xid (0000:3b:00): 13, Graphics Exception ...
 * with or without a dmesg timestamp or a /dev/kmsg record prefix. pciBusId is domain:bus:device
 * in sysfs form (0000:3b:00), which is what pciAddress(gpu.pciBusId) starts with.
 */
export function parseXidLine(line: string): { pciBusId: string; code: number } | undefined {
  const m = /NVRM: Xid \((?:PCI:)?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})(?:\.[0-7])?\): (\d+)\b/.exec(line);
  if (!m) return undefined;
  return { pciBusId: pciAddress(m[1]!)!, code: Number(m[2]) };
}

/** `nvidia-smi topo -m`'s GPU-to-GPU part: link kinds and NVLink lanes by GPU index. */
export interface TopoMatrix {
  /** GPU indexes in matrix order (GPU0 → 0). */
  gpus: number[];
  link: LinkKind[][];
  nvlinks: number[][];
}

/** Legend of `nvidia-smi topo -m`. SOC is what drivers before r384 printed for SYS. */
const topoCells: Record<string, LinkKind> = { PIX: 'pix', PXB: 'pxb', PHB: 'phb', NODE: 'node', SYS: 'sys', SOC: 'sys' };

/**
 * Parse `nvidia-smi topo -m`. The header row lists GPU columns first, then NIC columns, then
 * CPU/NUMA affinity columns; only the GPU×GPU cells are kept. NIC rows and legend lines are ignored.
 */
export function parseTopoMatrix(text: string): TopoMatrix {
  const lines = text.split('\n').map(stripAnsi);
  const header = lines.find((l) => /^\s+GPU\d+\b/.test(l));
  if (!header) throw new BerthError('decode', 'nvidia-smi topo -m: no header row with GPU0...');
  const columns: number[] = [];
  for (const word of header.trim().split(/\s+/)) {
    const m = /^GPU(\d+)$/.exec(word);
    if (!m) break;
    columns.push(Number(m[1]));
  }
  const link: LinkKind[][] = [];
  const nvlinks: number[][] = [];
  const rows: number[] = [];
  for (const line of lines) {
    const words = line.trim().split(/\s+/);
    const m = /^GPU(\d+)$/.exec(words[0] ?? '');
    if (!m || line !== line.trimStart()) continue;
    const cells = words.slice(1, 1 + columns.length);
    if (cells.length < columns.length) throw new BerthError('decode', `nvidia-smi topo -m: row ${words[0]} has ${cells.length} GPU cells, expected ${columns.length}`);
    rows.push(Number(m[1]));
    // X (a GPU with itself) has no LinkKind; 'unknown' keeps it out of any ranking.
    link.push(cells.map((c) => (/^NV\d+$/.test(c) ? 'nvlink' : (topoCells[c] ?? 'unknown'))));
    nvlinks.push(cells.map((c) => (/^NV\d+$/.test(c) ? Number(c.slice(2)) : 0)));
  }
  if (rows.join() !== columns.join()) throw new BerthError('decode', `nvidia-smi topo -m: rows GPU${rows.join(',GPU')} do not match columns GPU${columns.join(',GPU')}`);
  return { gpus: columns, link, nvlinks };
}

export class NvidiaSmiBackend implements GpuBackend {
  readonly name = 'nvidia-smi';
  private readonly binary: string;
  private readonly log: BackendLog;
  private readonly stops = new Set<() => void>();
  private gpus: Gpu[] | undefined;

  constructor(private readonly options: NvidiaSmiOptions = {}) {
    this.binary = options.binary ?? 'nvidia-smi';
    this.log = options.log ?? { info: () => {}, warn: () => {} };
  }

  /** Run nvidia-smi; any failure (absent, no driver, exit status) is not-available. */
  private async smi(args: string[]): Promise<string> {
    try {
      const result = await run(this.binary, args, { env: this.options.env, timeoutMs: 30_000 });
      return result.stdout;
    } catch (err) {
      const e = err as BerthError;
      const why = [e.message, e.details].filter(Boolean).join(': ');
      throw new BerthError('not-available', `nvidia-smi: ${why}`, { cause: err });
    }
  }

  async discover(): Promise<Gpu[]> {
    const rows = parseQueryGpu(await this.smi(queryGpuArgs));
    const sys = this.options.sysRoot ?? '/sys';
    const dev = this.options.devRoot ?? '/dev';
    const gpus = await Promise.all(
      rows.map(async (row): Promise<Gpu> => ({
        ...row,
        numaNode: await readNumaNode(join(sys, 'bus/pci/devices', pciAddress(row.pciBusId)!, 'numa_node')),
        devicePath: join(dev, `nvidia${row.index}`),
      })),
    );
    this.gpus = gpus;
    return gpus;
  }

  async topology(): Promise<GpuTopology> {
    const gpus = await this.discover();
    const matrix = parseTopoMatrix(await this.smi(['topo', '-m']));
    const position = new Map<string, number>();
    for (const g of gpus) {
      const i = matrix.gpus.indexOf(g.index);
      if (i >= 0) position.set(g.uuid, i);
    }
    const cell = <T>(table: T[][], a: string, b: string, none: T): T => {
      const i = position.get(a);
      const j = position.get(b);
      return i === undefined || j === undefined ? none : (table[i]?.[j] ?? none);
    };
    return {
      link: (a, b) => cell(matrix.link, a, b, 'unknown'),
      nvlinks: (a, b) => cell(matrix.nvlinks, a, b, 0),
    };
  }

  async controlDevices(): Promise<string[]> {
    return controlDeviceNodes(this.options.devRoot ?? '/dev');
  }

  async probe(uuid: string): Promise<boolean> {
    try {
      const r = await run(this.binary, ['--query-gpu=uuid', '--format=csv,noheader', `--id=${uuid}`], { env: this.options.env, allowFailure: true, timeoutMs: 30_000 });
      return r.code === 0 && r.stdout.trim() === uuid;
    } catch {
      return false;
    }
  }

  watchHealth(onEvent: (event: HealthEvent) => void): () => void {
    let stopped = false;
    const stopKmsg = this.followKernelLog(onEvent, () => stopped);
    const stopEcc = this.pollEcc(onEvent, () => stopped);
    const stop = (): void => {
      stopped = true;
      stopKmsg();
      stopEcc();
      this.stops.delete(stop);
    };
    this.stops.add(stop);
    return stop;
  }

  /**
   * Follow the kernel log for Xid lines with `dmesg --follow-new` rather than reading /dev/kmsg
   * ourselves: Node has no lseek(SEEK_END) to skip old records, and a blocking read of /dev/kmsg
   * would hold a libuv threadpool thread forever. A child process blocks in its own read, is
   * killed on stop, and is restarted (after 10 s) if it exits, e.g. under dmesg_restrict.
   */
  private followKernelLog(onEvent: (event: HealthEvent) => void, stopped: () => boolean): () => void {
    let child: ChildProcessWithoutNullStreams | undefined;
    let restart: NodeJS.Timeout | undefined;
    const start = async (): Promise<void> => {
      const { spawn } = await import('node:child_process');
      if (stopped()) return;
      const dmesg = this.options.dmesgBinary ?? 'dmesg';
      const c = spawn(dmesg, ['--follow-new', '--notime'], { env: this.options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
      child = c;
      let partial = '';
      c.stdout.setEncoding('utf8');
      c.stdout.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) this.onKernelLine(line, onEvent);
      });
      let stderr = '';
      c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      c.on('error', (err) => this.log.warn(`nvidia-smi backend: cannot follow the kernel log for Xid errors: ${err.message}`));
      c.on('close', (code) => {
        child = undefined;
        if (stopped()) return;
        this.log.warn(`nvidia-smi backend: ${dmesg} --follow-new exited (${code}): ${stderr.trim()}; Xid errors are not seen until it restarts in 10 s`);
        restart = setTimeout(() => void start(), 10_000);
        restart.unref();
      });
    };
    void start();
    return () => {
      clearTimeout(restart);
      child?.kill();
    };
  }

  private onKernelLine(line: string, onEvent: (event: HealthEvent) => void): void {
    const xid = parseXidLine(line);
    if (!xid) return;
    const gpu = this.gpus?.find((g) => pciAddress(g.pciBusId)?.startsWith(xid.pciBusId));
    if (!gpu) {
      this.log.warn(`nvidia-smi backend: Xid ${xid.code} on PCI ${xid.pciBusId}, which is no GPU discovered: ${line.trim()}`);
      return;
    }
    onEvent({ uuid: gpu.uuid, kind: 'xid', code: xid.code, at: new Date() });
  }

  /** Poll the volatile uncorrected (double-bit) ECC count; a rise over the last poll is an event. */
  private pollEcc(onEvent: (event: HealthEvent) => void, stopped: () => boolean): () => void {
    const last = new Map<string, number>();
    const poll = async (): Promise<void> => {
      let counts: Map<string, number | undefined>;
      try {
        counts = parseEccCounts(await this.smi(queryEccArgs));
      } catch (err) {
        this.log.warn(`nvidia-smi backend: ECC poll: ${(err as Error).message}`);
        return;
      }
      if (stopped()) return;
      for (const [uuid, count] of counts) {
        if (count === undefined) continue;
        const before = last.get(uuid);
        last.set(uuid, count);
        if (before !== undefined && count > before) onEvent({ uuid, kind: 'ecc-double-bit', code: count, at: new Date() });
      }
    };
    void poll(); // the first poll is the baseline
    const timer = setInterval(() => void poll(), this.options.eccPollMs ?? 10_000);
    timer.unref();
    return () => clearInterval(timer);
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop();
  }
}

/** The driver's device nodes every GPU container needs, those that exist under `dev`. */
export function controlDeviceNodes(dev: string): string[] {
  return ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset'].map((n) => join(dev, n)).filter((p) => existsSync(p));
}

/** The NUMA node of a PCI device from sysfs's numa_node; -1 when absent or unreadable. */
export async function readNumaNode(path: string): Promise<number> {
  try {
    const n = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isNaN(n) ? -1 : n;
  } catch {
    return -1;
  }
}

function csvLines(csv: string): string[] {
  return csv.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

function stripAnsi(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r$/, '');
}
