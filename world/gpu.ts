import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { repoRoot } from './cni.js';
import { FakeKubelet } from './fake-kubelet.js';
import { daemonNodeFlags } from '../lib/node-flags.js';

// berth-gpu as tests and the demo see it: the built daemon on the fake backend (a described
// set of GPUs, device nodes it creates, an events file for Xid injection) next to a fake
// kubelet, all in a fresh directory. Not importing vitest.

export interface FakeGpu {
  index: number;
  uuid: string;
  name: string;
  memoryMiB: number;
  pciBusId: string;
  numaNode: number;
  nvlinks?: Record<string, number>;
}

/** n GPUs over two NUMA nodes, neighbours (0-1, 2-3...) joined by NVLink. */
export function fakeGpus(n: number): FakeGpu[] {
  return Array.from({ length: n }, (_, i) => ({
    index: i,
    uuid: `GPU-${String(i).padStart(8, '0')}-1111-2222-3333-${String(i).padStart(12, '0')}`,
    name: 'NVIDIA A100-SXM4-40GB',
    memoryMiB: 40960,
    pciBusId: `00000000:${(0x10 + i).toString(16).toUpperCase()}:00.0`,
    numaNode: i < n / 2 ? 0 : 1,
    nvlinks: { [`GPU-${String(i ^ 1).padStart(8, '0')}-1111-2222-3333-${String(i ^ 1).padStart(12, '0')}`]: 12 },
  }));
}

export class GpuWorld {
  readonly kubelet: FakeKubelet;
  private proc?: ChildProcess;
  private output: string[] = [];
  readonly kubeletDir: string;
  readonly fakeDir: string;
  readonly cdiDir: string;
  readonly configFile: string;

  private constructor(readonly dir: string) {
    this.kubeletDir = join(dir, 'device-plugins');
    this.fakeDir = join(dir, 'fake');
    this.cdiDir = join(dir, 'cdi');
    this.configFile = join(dir, 'berth-gpu.yaml');
    mkdirSync(this.kubeletDir, { recursive: true });
    mkdirSync(this.fakeDir, { recursive: true });
    this.kubelet = new FakeKubelet(this.kubeletDir);
  }

  static async start(gpus: FakeGpu[], config: Record<string, unknown> = {}): Promise<GpuWorld> {
    mkdirSync('/var/lib/berth-test', { recursive: true });
    const world = new GpuWorld(mkdtempSync('/var/lib/berth-test/gpu-'));
    try {
      writeFileSync(join(world.fakeDir, 'gpus.json'), JSON.stringify(gpus, null, 2));
      writeFileSync(join(world.fakeDir, 'events'), '');
      world.writeConfig(config);
      await world.kubelet.start();
      await world.launch();
    } catch (err) {
      await world.stop();
      throw err;
    }
    return world;
  }

  writeConfig(config: Record<string, unknown>): void {
    writeFileSync(this.configFile, stringify({ cdiSpecDir: this.cdiDir, metricsAddr: '127.0.0.1:0', ...config }));
  }

  async launch(): Promise<void> {
    const bin = join(repoRoot, 'dist/bin/berth-gpu');
    this.output.push('\n--- berth-gpu start ---\n');
    this.proc = spawn(process.execPath, [...daemonNodeFlags, bin, '--kubelet-dir', this.kubeletDir, '--backend', 'fake', '--fake-dir', this.fakeDir, '--config', this.configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    const keep = (b: Buffer): void => void this.output.push(b.toString());
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
  }

  log(): string {
    return this.output.join('');
  }

  /** The port berth-gpu bound for /metrics (it listens on port 0 in tests). */
  async metricsPort(): Promise<number> {
    for (let i = 0; i < 200; i++) {
      const m = /"port":(\d+),"msg":"serving \/metrics/.exec(this.log());
      if (m) return Number(m[1]);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`berth-gpu did not report its metrics port: ${this.log().slice(-1500)}`);
  }

  /** Append a line to the fake backend's events file (xid <uuid> <code>, probe-fail <uuid>...). */
  inject(line: string): void {
    appendFileSync(join(this.fakeDir, 'events'), `${line}\n`);
  }

  signal(sig: NodeJS.Signals): void {
    this.proc?.kill(sig);
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
    await this.kubelet.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
