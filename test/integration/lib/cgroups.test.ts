import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { CpuRateTracker, defaultCgroupRoot, detectCgroupMode, readCgroupStats, v1Hierarchies } from '../../../lib/cgroups.js';

// A real cgroup on this machine: a busy shell loop placed in a fresh berth-test-<rand> cgroup,
// read twice. Needs root and a writable cgroupfs.

const isRoot = process.getuid?.() === 0;
const mode = existsSync(defaultCgroupRoot) ? detectCgroupMode() : undefined;
const v1Controllers = ['cpu', 'cpuacct', 'memory', 'pids'];

function skipReason(): string | undefined {
  if (!isRoot) return 'not root';
  if (!mode) return `${defaultCgroupRoot} does not exist`;
  if (mode === 'v2') return undefined;
  const mounted = v1Hierarchies();
  const missing = v1Controllers.filter((c) => !mounted.has(c));
  return missing.length ? `cgroup v1 controllers not mounted: ${missing.join(', ')}` : undefined;
}

const reason = skipReason();
if (reason) console.log(`skipping cgroup integration tests: ${reason}`);

/** The directories of cgroup `name` in every hierarchy the test uses (one on v2). */
function cgroupDirs(name: string): string[] {
  if (mode === 'v2') return [join(defaultCgroupRoot, name)];
  const mounted = v1Hierarchies();
  return [...new Set(v1Controllers.map((c) => join(mounted.get(c)!.mountPoint, name)))];
}

async function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((resolve) => child.once('exit', resolve));
}

describe.skipIf(reason !== undefined)('cgroup stats on this machine', () => {
  let dirs: string[] = [];
  let child: ChildProcess | undefined;

  afterEach(async () => {
    if (child) {
      child.kill('SIGKILL');
      await waitForExit(child);
      child = undefined;
    }
    // A cgroup can stay busy for a moment after its last task exited.
    for (const dir of dirs.reverse()) {
      for (let attempt = 0; existsSync(dir); attempt++) {
        try {
          rmdirSync(dir);
        } catch (err) {
          if (attempt >= 50) throw err;
          await sleep(20);
        }
      }
    }
    dirs = [];
  });

  it('sees the CPU usage of a busy process grow and its memory above zero', async () => {
    const name = `berth-test-${Math.random().toString(36).slice(2, 10)}`;
    for (const dir of cgroupDirs(name)) {
      mkdirSync(dir);
      dirs.push(dir);
    }
    // The shell waits for a line, so it is in the cgroup before it execs the loop; the exec's
    // fresh pages are then charged to the new memory cgroup.
    child = spawn('sh', ['-c', `read _; exec sh -c 'x=0; while :; do x=$((x+1)); done'`], { stdio: ['pipe', 'ignore', 'ignore'] });
    const pid = child.pid!;
    for (const dir of dirs) writeFileSync(join(dir, 'cgroup.procs'), `${pid}\n`);
    child.stdin!.end('go\n');
    await sleep(100);

    const tracker = new CpuRateTracker();
    const first = await readCgroupStats(`/${name}`);
    expect(first).toBeDefined();
    tracker.update(name, first!.cpu.usageCoreNanoSeconds, first!.timestampNs);
    await sleep(400);
    const second = await readCgroupStats(`/${name}`);
    expect(second).toBeDefined();

    expect(second!.mode).toBe(mode === 'v2' ? 'v2' : 'v1');
    expect(second!.cpu.usageCoreNanoSeconds).toBeGreaterThan(first!.cpu.usageCoreNanoSeconds);
    const nanoCores = tracker.update(name, second!.cpu.usageCoreNanoSeconds, second!.timestampNs);
    // One spinning shell uses about one core; allow for a busy or throttled machine.
    expect(nanoCores).toBeGreaterThan(100_000_000n);
    expect(nanoCores).toBeLessThan(1_500_000_000n);
    expect(second!.memory?.usageBytes).toBeGreaterThan(0n);
    expect(second!.memory?.workingSetBytes).toBeLessThanOrEqual(second!.memory!.usageBytes);
    expect(second!.pids?.current).toBe(1n);
  });

  it('is undefined for a cgroup that does not exist', async () => {
    expect(await readCgroupStats(`/berth-test-missing-${process.pid}`)).toBeUndefined();
  });
});
