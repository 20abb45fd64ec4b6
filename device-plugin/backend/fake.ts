import { existsSync, lstatSync, watch, type FSWatcher, type Stats } from 'node:fs';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod';
import { BerthError } from '../../lib/errors.js';
import { describeZodError } from '../../lib/config-file.js';
import { run } from '../../lib/exec.js';
import type { Gpu, GpuBackend, GpuTopology, HealthEvent, LinkKind } from './types.js';

// A GPU backend over a plain directory, for tests and demos on machines without a GPU:
//   gpus.json  the GPUs (what NVML would enumerate), optionally with NVLink lanes per peer
//   events     append-only health events, one per line (what the driver would report)
//   dev/       character device nodes this backend creates, shaped like the real ones
// The device nodes are real (mknod), so a container runtime can bind them into containers.

export interface BackendLog {
  info(msg: string): void;
  warn(msg: string): void;
}

const silentLog: BackendLog = { info: () => {}, warn: () => {} };

/** Major numbers of the NVIDIA driver: 195 is fixed; nvidia-uvm's is dynamic on real hosts. */
export const nvidiaMajor = 195;
/**
 * nvidia-uvm gets a dynamically allocated major on real hosts (often 234-511). The fake uses
 * 235, from the range Linux reserves for local/experimental use (234-239 in devices.txt), which
 * no in-tree driver claims; the node only has to be a char device, nothing opens it.
 */
export const fakeUvmMajor = 235;
/** How often the events file is polled besides fs.watch, which can miss appends. */
const pollMs = 200;

const gpuSchema = z.strictObject({
  index: z.number().int().min(0).max(254),
  uuid: z.string().regex(/^GPU-[0-9A-Za-z-]+$/, 'must look like GPU-xxxxxxxx-xxxx-...'),
  name: z.string().min(1),
  memoryMiB: z.number().int().min(0),
  pciBusId: z.string().regex(/^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$/, 'must be domain:bus:device.function like 00000000:3B:00.0'),
  numaNode: z.number().int().min(-1),
  /** NVLink lanes to other GPUs, by their UUID. */
  nvlinks: z.record(z.string(), z.number().int().min(0)).optional(),
});
const gpusSchema = z.array(gpuSchema).superRefine((gpus, ctx) => {
  const seen = { index: new Set<number>(), uuid: new Set<string>() };
  gpus.forEach((g, i) => {
    if (seen.index.has(g.index)) ctx.addIssue({ code: 'custom', path: [i, 'index'], message: `duplicate index ${g.index}` });
    if (seen.uuid.has(g.uuid)) ctx.addIssue({ code: 'custom', path: [i, 'uuid'], message: `duplicate uuid ${g.uuid}` });
    seen.index.add(g.index);
    seen.uuid.add(g.uuid);
  });
});
type FakeGpu = z.infer<typeof gpuSchema>;

interface DeviceNode {
  name: string;
  major: number;
  minor: number;
}

const controlNodes: DeviceNode[] = [
  { name: 'nvidiactl', major: nvidiaMajor, minor: 255 },
  { name: 'nvidia-uvm', major: fakeUvmMajor, minor: 0 },
  { name: 'nvidia-uvm-tools', major: fakeUvmMajor, minor: 1 },
];

/** One health line of the events file, or a probe override, or why it is malformed. */
export type FakeEventLine =
  | { kind: 'health'; uuid: string; event: HealthEvent['kind']; code: number }
  | { kind: 'probe'; uuid: string; ok: boolean }
  | { kind: 'malformed'; why: string };

export function parseFakeEventLine(line: string): FakeEventLine {
  const words = line.trim().split(/\s+/);
  const [verb, uuid, arg] = words;
  const healthKinds: Record<string, HealthEvent['kind']> = { xid: 'xid', 'ecc-dbe': 'ecc-double-bit', 'ecc-sbe': 'ecc-single-bit' };
  if (verb === 'probe-fail' || verb === 'probe-ok') {
    if (words.length !== 2 || !uuid) return { kind: 'malformed', why: `${verb} takes one argument, a GPU uuid` };
    return { kind: 'probe', uuid, ok: verb === 'probe-ok' };
  }
  const event = verb === undefined ? undefined : healthKinds[verb];
  if (!event) return { kind: 'malformed', why: `unknown event ${JSON.stringify(verb ?? '')}` };
  if (words.length !== 3 || !uuid || !arg || !/^\d+$/.test(arg)) return { kind: 'malformed', why: `${verb} takes a GPU uuid and a number` };
  return { kind: 'health', uuid, event, code: Number(arg) };
}

export class FakeBackend implements GpuBackend {
  readonly name = 'fake';
  private readonly stops = new Set<() => void>();
  /** probe-fail / probe-ok from the events file override probe()'s answer per GPU. */
  private readonly probeOverrides = new Map<string, boolean>();

  constructor(
    readonly dir: string,
    private readonly log: BackendLog = silentLog,
  ) {}

  private get gpusFile(): string {
    return join(this.dir, 'gpus.json');
  }

  private get eventsFile(): string {
    return join(this.dir, 'events');
  }

  private get devDir(): string {
    return join(this.dir, 'dev');
  }

  private async readGpus(): Promise<FakeGpu[]> {
    let text: string;
    try {
      text = await readFile(this.gpusFile, 'utf8');
    } catch (err) {
      throw new BerthError('invalid-config', `${this.gpusFile}: ${(err as Error).message}`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new BerthError('invalid-config', `${this.gpusFile}: not valid JSON: ${(err as Error).message}`);
    }
    const result = gpusSchema.safeParse(raw);
    if (!result.success) throw new BerthError('invalid-config', describeZodError(result.error, this.gpusFile));
    return result.data;
  }

  async discover(): Promise<Gpu[]> {
    const gpus = await this.readGpus();
    await mkdir(this.devDir, { recursive: true });
    for (const g of gpus) await this.ensureNode({ name: `nvidia${g.index}`, major: nvidiaMajor, minor: g.index });
    for (const node of controlNodes) await this.ensureNode(node);
    return gpus.map((g) => ({
      index: g.index,
      uuid: g.uuid,
      name: g.name,
      memoryMiB: g.memoryMiB,
      pciBusId: g.pciBusId,
      numaNode: g.numaNode,
      devicePath: join(this.devDir, `nvidia${g.index}`),
    }));
  }

  /** Create a char device node, keeping one that is already right and replacing one that is not. */
  private async ensureNode(node: DeviceNode): Promise<void> {
    const path = join(this.devDir, node.name);
    const st = lstatSafe(path);
    if (st?.isCharacterDevice() && devMajor(st.rdev) === node.major && devMinor(st.rdev) === node.minor) return;
    if (st) {
      this.log.warn(`fake gpu: replacing ${path}: not char device ${node.major}:${node.minor}`);
      await rm(path, { recursive: true, force: true });
    }
    await run('mknod', ['-m', '0666', path, 'c', String(node.major), String(node.minor)]);
  }

  async controlDevices(): Promise<string[]> {
    return controlNodes.map((n) => join(this.devDir, n.name)).filter((p) => existsSync(p));
  }

  async topology(): Promise<GpuTopology> {
    const gpus = await this.readGpus();
    const byUuid = new Map(gpus.map((g) => [g.uuid, g]));
    const lanes = (a: string, b: string): number => Math.max(byUuid.get(a)?.nvlinks?.[b] ?? 0, byUuid.get(b)?.nvlinks?.[a] ?? 0);
    return {
      link(a: string, b: string): LinkKind {
        const ga = byUuid.get(a);
        const gb = byUuid.get(b);
        if (!ga || !gb) return 'unknown';
        if (lanes(a, b) > 0) return 'nvlink';
        return ga.numaNode === gb.numaNode && ga.numaNode >= 0 ? 'node' : 'sys';
      },
      nvlinks: lanes,
    };
  }

  async probe(uuid: string): Promise<boolean> {
    const override = this.probeOverrides.get(uuid);
    if (override !== undefined) return override;
    let gpus: FakeGpu[];
    try {
      gpus = await this.readGpus();
    } catch {
      return false;
    }
    const gpu = gpus.find((g) => g.uuid === uuid);
    return gpu !== undefined && lstatSafe(join(this.devDir, `nvidia${gpu.index}`))?.isCharacterDevice() === true;
  }

  watchHealth(onEvent: (event: HealthEvent) => void): () => void {
    const file = this.eventsFile;
    // Follow from the current end: what is in the file already happened before we started.
    let offset = lstatSafe(file)?.size ?? 0;
    let partial = '';
    let stopped = false;
    let reading = false;
    let again = false;
    let watcher: FSWatcher | undefined;

    const deliver = (line: string): void => {
      if (!line.trim()) return;
      const parsed = parseFakeEventLine(line);
      if (parsed.kind === 'malformed') {
        this.log.warn(`fake gpu: ${file}: skipping line ${JSON.stringify(line)}: ${parsed.why}`);
      } else if (parsed.kind === 'probe') {
        this.probeOverrides.set(parsed.uuid, parsed.ok);
      } else {
        onEvent({ uuid: parsed.uuid, kind: parsed.event, code: parsed.code, at: new Date() });
      }
    };

    const readNew = async (): Promise<void> => {
      const size = (await stat(file).catch(() => undefined))?.size;
      if (size === undefined) return;
      if (size < offset) {
        this.log.warn(`fake gpu: ${file} shrank from ${offset} to ${size} bytes; reading it from the start`);
        offset = 0;
        partial = '';
      }
      if (size === offset) return;
      const fh = await open(file, 'r');
      try {
        const buf = Buffer.alloc(size - offset);
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        offset += bytesRead;
        partial += buf.subarray(0, bytesRead).toString('utf8');
      } finally {
        await fh.close();
      }
      const lines = partial.split('\n');
      partial = lines.pop() ?? ''; // an incomplete last line waits for its newline
      for (const line of lines) {
        if (stopped) return;
        deliver(line);
      }
    };

    // One read at a time; a wake-up during a read schedules one more.
    const wake = (): void => {
      if (stopped) return;
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      readNew()
        .catch((err: unknown) => this.log.warn(`fake gpu: reading ${file}: ${(err as Error).message}`))
        .finally(() => {
          reading = false;
          if (again) {
            again = false;
            wake();
          }
        });
    };

    const attachWatcher = (): void => {
      if (watcher || stopped || !existsSync(file)) return;
      try {
        watcher = watch(file, { persistent: false }, wake);
        watcher.on('error', () => {
          watcher?.close();
          watcher = undefined; // e.g. the file was replaced; the poll re-attaches
        });
      } catch {
        watcher = undefined;
      }
    };

    attachWatcher();
    const timer = setInterval(() => {
      attachWatcher();
      wake();
    }, pollMs);
    timer.unref();

    const stop = (): void => {
      stopped = true;
      clearInterval(timer);
      watcher?.close();
      this.stops.delete(stop);
    };
    this.stops.add(stop);
    return stop;
  }

  async close(): Promise<void> {
    for (const stop of [...this.stops]) stop();
  }
}

function lstatSafe(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** Linux's dev_t encoding (glibc gnu_dev_major/minor). */
export function devMajor(rdev: number): number {
  return ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
}

export function devMinor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
}
