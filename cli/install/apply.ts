import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { run } from '../../lib/exec.js';
import type { Action, Change, Plan } from './plan.js';
import { releaseFiles, type ReleaseSource } from './release.js';

// The executor: carries out a plan (or, with dryRun, only says what it would do), printing one
// line per action. Paths in the plan are the node's; with a root they are written under it.

export interface ApplyOptions {
  root: string;
  dryRun: boolean;
  release?: ReleaseSource;
  out: (line: string) => void;
  /**
   * Where to record the directories this run creates (a node path; install: under the prefix),
   * so uninstall can remove them again when they are empty.
   */
  createdDirsFile?: string;
}

/** The directories a run made, as node paths (the executor's bookkeeping, not part of the plan). */
class DirMaker {
  readonly created: string[] = [];
  constructor(private readonly at: (p: string) => string) {}

  ensure(dir: string): void {
    const missing: string[] = [];
    for (let d = dir; d !== '/' && !existsSync(this.at(d)); d = dirname(d)) missing.push(d);
    if (missing.length === 0) return;
    mkdirSync(this.at(dir), { recursive: true });
    this.created.push(...missing);
  }
}

const verbs: Record<Change, [done: string, would: string]> = {
  created: ['created', 'would create'],
  updated: ['updated', 'would update'],
  unchanged: ['unchanged', 'unchanged'],
  removed: ['removed', 'would remove'],
  kept: ['kept', 'would keep'],
};

function line(change: Change, dryRun: boolean, what: string, note?: string): string {
  const verb = verbs[change][dryRun ? 1 : 0];
  return `${verb.padEnd(13)}${what}${note ? `  (${note})` : ''}`;
}

/** Counts of what a plan changes (created, updated, removed), for the summary line. */
export function countChanges(plan: Plan): number {
  return plan.actions.filter((a) => {
    if (a.kind === 'file' || a.kind === 'link' || a.kind === 'release') return a.change === 'created' || a.change === 'updated';
    return a.kind === 'remove' || a.kind === 'packages' || a.kind === 'systemctl';
  }).length;
}

export async function applyPlan(plan: Plan, opts: ApplyOptions): Promise<void> {
  const at = (p: string): string => (opts.root ? join(opts.root, p) : p);
  const dirs = new DirMaker(at);
  for (const w of plan.warnings) opts.out(`note: ${w}`);
  for (const action of plan.actions) await applyAction(action, opts, at, dirs);
  if (opts.createdDirsFile && dirs.created.length > 0) recordCreatedDirs(at(opts.createdDirsFile), dirs.created);
  const n = countChanges(plan);
  opts.out(n === 0 ? 'everything is unchanged' : `${n} change(s)${opts.dryRun ? ' would be made (--dry-run: nothing was changed)' : ' made'}`);
}

async function applyAction(a: Action, opts: ApplyOptions, at: (p: string) => string, dirs: DirMaker): Promise<void> {
  const { dryRun, out } = opts;
  switch (a.kind) {
    case 'packages':
      out(`${(dryRun ? 'would install' : 'installing').padEnd(13)}Debian packages: ${a.packages.join(' ')}`);
      if (!dryRun) await installPackages(a.packages);
      return;
    case 'release':
      out(line(a.change, dryRun, `${a.path} (berth ${a.version})`));
      if (!dryRun && a.change !== 'unchanged') {
        dirs.ensure(dirname(a.path));
        copyRelease(opts.release!, at(a.path));
      }
      return;
    case 'file':
      out(line(a.change, dryRun, a.path, a.note));
      if (!dryRun && (a.change === 'created' || a.change === 'updated')) {
        dirs.ensure(dirname(a.path));
        writeFileAtomic(at(a.path), a.content, { mode: a.mode });
        chmodSync(at(a.path), a.mode);
      }
      return;
    case 'link':
      out(line(a.change, dryRun, `${a.path} -> ${a.target}`));
      if (!dryRun && a.change !== 'unchanged') {
        dirs.ensure(dirname(a.path));
        replaceLink(at(a.path), a.target);
      }
      return;
    case 'remove':
      out(line('removed', dryRun, a.path));
      if (!dryRun) rmSync(at(a.path), { recursive: a.recursive, force: true });
      return;
    case 'rmdir':
      if (dryRun) return;
      try {
        rmdirSync(at(a.path));
        out(line('removed', false, a.path));
      } catch {
        // not empty, or gone: someone else's files stay.
      }
      return;
    case 'systemctl': {
      const args = opts.root ? [`--root=${opts.root}`, ...a.args] : a.args;
      out(`${(dryRun ? 'would run' : 'running').padEnd(13)}systemctl ${args.join(' ')}`);
      if (!dryRun) await run('systemctl', args);
      return;
    }
    case 'print':
      out(a.text.replace(/\n$/, ''));
      return;
  }
}

/** A symlink put in place by rename, so the path is never missing in between. */
function replaceLink(path: string, target: string): void {
  const tmp = `${path}.berth-${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, path);
}

/**
 * The release tree copied to `dir`: written beside it and renamed into place, so a running
 * berth never sees a half-copied tree; an old copy of the same version is moved aside and removed.
 */
function copyRelease(release: ReleaseSource, dir: string): void {
  const tmp = `${dirname(dir)}/.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  for (const [rel, f] of releaseFiles(release.entries)) {
    const to = join(tmp, rel);
    mkdirSync(dirname(to), { recursive: true });
    if (f.content !== undefined) writeFileSync(to, f.content);
    else copyFileSync(f.from!, to);
    chmodSync(to, f.executable ? 0o755 : 0o644);
  }
  if (existsSync(dir)) {
    const old = `${dirname(dir)}/.${process.pid}.old`;
    renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, dir);
  }
}

/** Adds to the record of created directories (a JSON list of node paths). */
function recordCreatedDirs(file: string, created: string[]): void {
  let known: string[] = [];
  try {
    known = JSON.parse(readFileSync(file, 'utf8')) as string[];
  } catch {
    // first run: no record yet.
  }
  const all = [...new Set([...known, ...created])].sort();
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic(file, `${JSON.stringify(all, null, 1)}\n`, { mode: 0o644 });
}

async function installPackages(packages: string[]): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = ['install', '-y', '--no-install-recommends', ...packages];
  const first = await run('apt-get', install, { env, allowFailure: true });
  if (first.code === 0) return;
  // Most often a stale package list: fetch it once and try again.
  await run('apt-get', ['update'], { env });
  await run('apt-get', install, { env });
}
