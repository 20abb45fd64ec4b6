import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { daemonNodeFlags } from '../lib/node-flags.js';
import { repoRoot } from './cni.js';
import { releaseUnder } from './csi.js';

// berthd as the CLI tests see it (doctor and status read the http address from the file, so it
// is fixed here, unlike world/berthd.ts which lets berthd pick a port): the built dist/bin/berthd started on a settings file of the
// test's own (everything under a fresh directory, http on a free port), ready once /readyz says
// so, stopped with SIGTERM and its directory (mounts included) removed. Not importing vitest.

const testBase = '/var/lib/berth-test';

/** A TCP port nothing listens on right now (the kernel's choice). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export class BerthdNode {
  private proc?: ChildProcess;
  private output = '';

  private constructor(
    /** Scratch directory: sockets, roots and the settings file live here. */
    readonly dir: string,
    /** The settings file berthd runs with. */
    readonly configFile: string,
    readonly http: string,
  ) {}

  /** Start berthd with `sections(dir)` as its settings (http added); resolves once /readyz is 200. */
  static async start(sections: (dir: string) => Record<string, unknown>): Promise<BerthdNode> {
    mkdirSync(testBase, { recursive: true });
    const dir = mkdtempSync(join(testBase, 'berthd-'));
    const http = `127.0.0.1:${await freePort()}`;
    const configFile = join(dir, 'berth.yaml');
    writeFileSync(configFile, stringify({ http, logLevel: 'warn', ...sections(dir) }));
    const world = new BerthdNode(dir, configFile, http);
    try {
      await world.launch();
    } catch (err) {
      await world.stop();
      throw err;
    }
    return world;
  }

  private async launch(): Promise<void> {
    this.proc = spawn(process.execPath, [...daemonNodeFlags, join(repoRoot, 'dist/bin/berthd'), '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer) => void (this.output = (this.output + b.toString()).slice(-20_000));
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    for (let i = 0; i < 400; i++) {
      if (this.proc.exitCode !== null) throw new Error(`berthd exited (${this.proc.exitCode}): ${this.output}`);
      const ready = await fetch(`http://${this.http}/readyz`).then((r) => r.status === 200, () => false);
      if (ready) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`berthd was not ready within 20 s: ${this.output}`);
  }

  log(): string {
    return this.output;
  }

  /** SIGTERM berthd and wait for it to exit (the directory stays). */
  async halt(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  }

  /** Stop berthd and remove everything it made under its directory. */
  async stop(): Promise<void> {
    await this.halt();
    releaseUnder(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
