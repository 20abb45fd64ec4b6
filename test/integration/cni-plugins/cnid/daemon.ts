import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CallerContext } from '../../../../lib/cni/cnid-protocol.js';
import { berthCniDir, repoRoot } from '../../../../world/cni.js';

// A berth-cnid started for one test on its own socket, with its JSON log collected so tests can
// tell a request the daemon served from one the shim ran standalone.

export const daemonBundle = join(repoRoot, 'dist/cnid/berth-cnid');
/** The daemon's PATH; runCni gives the plugins the same, as a runtime and berth-cnid under systemd share one. */
export const daemonPath = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';

/** What this (test) process truthfully claims in a HELLO, as the shim computes it in C. */
export function ownContext(): CallerContext {
  const umask = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
  return {
    cwd: process.cwd(),
    netns: readlinkSync('/proc/self/ns/net'),
    mntns: readlinkSync('/proc/self/ns/mnt'),
    euid: process.geteuid!(),
    umask: parseInt(umask, 8),
  };
}

/** The build id the daemon bundle was built with (the shims carry the same). */
export function daemonBuildId(bundle = daemonBundle): string {
  const out = execFileSync(process.execPath, [bundle, '--version'], { encoding: 'utf8' });
  const id = /^berth-cnid (\S+)$/m.exec(out)?.[1];
  if (!id) throw new Error(`unexpected --version output: ${out}`);
  return id;
}

interface LogLine {
  msg?: string;
  reason?: string;
  [key: string]: unknown;
}

export class DaemonUnderTest {
  readonly log: LogLine[] = [];
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  private constructor(
    readonly proc: ChildProcess,
    readonly socket: string,
  ) {
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve((this.exitCode = code))));
  }

  /** Start the daemon and resolve once it listens. */
  static async start(socket: string, bundle = daemonBundle): Promise<DaemonUnderTest> {
    const proc = spawn(process.execPath, [bundle, '--socket', socket], {
      cwd: process.cwd(),
      env: { PATH: daemonPath, BERTH_LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const daemon = new DaemonUnderTest(proc, socket);
    let stderr = '';
    proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const started = new Promise<void>((resolve, reject) => {
      let partial = '';
      const timer = setTimeout(() => reject(new Error(`berth-cnid did not start within 15 s: ${stderr}`)), 15_000);
      proc.stdout!.on('data', (b: Buffer) => {
        const lines = (partial + b.toString()).split('\n');
        partial = lines.pop()!;
        for (const line of lines) {
          try {
            const parsed = JSON.parse(line) as LogLine;
            daemon.log.push(parsed);
            if (parsed.msg === 'listening') {
              clearTimeout(timer);
              resolve();
            }
          } catch {
            // not a log line
          }
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`berth-cnid exited with ${code} before listening: ${stderr}`));
      });
    });
    try {
      await started;
    } catch (err) {
      // Never leave a half-started daemon behind a failed test.
      proc.kill('SIGKILL');
      throw err;
    }
    return daemon;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Requests the daemon ran itself (as opposed to declined or never saw). */
  served(): number {
    return this.log.filter((l) => l.msg === 'request done').length;
  }

  declined(): string[] {
    return this.log.filter((l) => l.msg?.startsWith('declined')).map((l) => String(l.reason));
  }

  /** SIGTERM, then SIGKILL if it has not exited in time; resolves with the exit code. */
  async stop(): Promise<number | null> {
    if (this.exitCode !== undefined) return this.exitCode;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  waitForExit(): Promise<number | null> {
    return this.exited;
  }
}

/** A temp directory for a test's socket, leases and helper plugins. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/**
 * An IPAM plugin (for CNI_PATH) that holds its ADD open: it lets berth-host-local allocate,
 * creates `<dir>/started`, and answers only once `<dir>/release` exists. A bridge ADD through
 * the daemon is then mid-request for as long as a test needs. Other verbs go straight through.
 */
export function holdingIpam(dir: string): { type: string; started: string; release: string } {
  const type = 'held-ipam';
  const started = join(dir, 'started');
  const release = join(dir, 'release');
  const script = `#!/bin/bash
input=$(cat)
if [ "$CNI_COMMAND" != ADD ]; then exec ${join(berthCniDir, 'berth-host-local')} <<<"$input"; fi
out=$(${join(berthCniDir, 'berth-host-local')} <<<"$input")
rc=$?
touch ${started}
for _ in $(seq 1500); do [ -e ${release} ] && break; sleep 0.02; done
printf '%s' "$out"
exit $rc
`;
  writeFileSync(join(dir, type), script);
  chmodSync(join(dir, type), 0o755);
  return { type, started, release };
}

export async function waitFor(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const rawClient = join(dirname(fileURLToPath(import.meta.url)), 'raw-client.mjs');

/** What raw-client.mjs reports: each connection's verdict, and how the call ran. */
export interface RawOutcome {
  verdicts: string[];
  ran?: 'daemon' | 'standalone';
  code?: number;
  stdout?: string;
  stderr?: string;
}

/** Run raw-client.mjs behind `wrapper` (e.g. nsenter ...), with `cwd`; resolves with its answer. */
export function runRawClient(wrapper: string[], request: object, cwd = process.cwd()): Promise<RawOutcome> {
  const argv = [...wrapper, process.execPath, rawClient, JSON.stringify(request)];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        resolve(JSON.parse(out) as RawOutcome);
      } catch {
        reject(new Error(`raw client exited with ${code}: ${out} ${err}`));
      }
    });
  });
}
