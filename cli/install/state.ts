import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { run } from '../../lib/exec.js';
import { allUnits } from './render.js';
import { digestInstalledTree } from './release.js';

// What the planner sees of the host: plain data read once by inspectHost, so the planner is a
// pure function and its tests build a HostState by hand. Paths are the node's (/etc/...);
// with --root they are read under that directory.

export type PathState = { kind: 'file'; content: string } | { kind: 'link'; target: string } | { kind: 'dir' } | { kind: 'other' };

export interface UnitState {
  enabled: boolean;
  /** undefined: no service manager to ask (--root). */
  active: boolean | undefined;
}

export interface HostState {
  /** Every path the plans may touch that exists; a path not here is absent. */
  paths: Record<string, PathState>;
  /** Installed releases under <prefix>/releases: version -> digest of the tree (undefined: not a complete release). */
  releases: Record<string, string | undefined>;
  /** Debian packages berth needs that are not installed (empty when not checked). */
  missingPackages: string[];
  units: Record<string, UnitState>;
  /** The node's name as kubelet will know it (the host name, or <root>/etc/hostname). */
  hostname: string;
  /** Mount points (node paths), for --purge never to delete through a mount. */
  mounts: string[];
}

/** The Debian packages berth needs on a node (what `berth install` adds when missing). */
export const debianPackages = ['containerd', 'runc', 'iptables', 'nftables', 'xfsprogs', 'e2fsprogs', 'iproute2', 'kmod', 'util-linux'];

/** Directories whose berth entries the plans look at, and the entry names that count. */
const scannedDirs: [dir: string, match: (name: string) => boolean][] = [
  ['/etc/berth', () => true],
  ['/etc/berth/kubelet', () => true],
  ['/etc/default', (n) => n.startsWith('berth')],
  ['/etc/systemd/system', (n) => allUnits.includes(n)],
  ['/opt/cni/bin', (n) => n.startsWith('berth-')],
];

function readPathState(abs: string): PathState | undefined {
  let st;
  try {
    st = lstatSync(abs);
  } catch {
    return undefined;
  }
  if (st.isSymbolicLink()) return { kind: 'link', target: readlinkSync(abs) };
  if (st.isDirectory()) return { kind: 'dir' };
  // Files berth manages are small text; anything big is reported as present but not read.
  if (st.isFile()) return st.size <= 1 << 20 ? { kind: 'file', content: readFileSync(abs, 'utf8') } : { kind: 'other' };
  return { kind: 'other' };
}

export interface InspectOptions {
  /** '' for the real root. */
  root: string;
  prefix: string;
  /** Extra node paths to read (from the configuration: CNI conf dir, crictl.yaml, state dirs). */
  extraPaths: string[];
  /** Extra directories whose berth-* entries to read (a CNI bin directory other than /opt/cni/bin). */
  extraDirs: string[];
  checkPackages: boolean;
}

const under = (root: string, path: string): string => (root ? join(root, path) : path);

export async function inspectHost(opts: InspectOptions): Promise<HostState> {
  const paths: Record<string, PathState> = {};
  const note = (p: string): void => {
    const s = readPathState(under(opts.root, p));
    if (s) paths[p] = s;
  };
  const dirs: typeof scannedDirs = [...scannedDirs, ...opts.extraDirs.map((d): (typeof scannedDirs)[number] => [d, (n) => n.startsWith('berth-')])];
  for (const [dir, match] of dirs) {
    note(dir);
    if (paths[dir]?.kind !== 'dir') continue;
    for (const name of readdirSync(under(opts.root, dir))) if (match(name)) note(`${dir}/${name}`);
  }
  const releasesDir = `${opts.prefix}/releases`;
  for (const p of [opts.prefix, `${opts.prefix}/current`, `${opts.prefix}/previous`, releasesDir, '/usr/local/bin/berth', ...opts.extraPaths]) note(p);
  const releases: Record<string, string | undefined> = {};
  if (paths[releasesDir]?.kind === 'dir') {
    for (const v of readdirSync(under(opts.root, releasesDir))) {
      if (v.startsWith('.')) continue;
      releases[v] = digestInstalledTree(under(opts.root, `${releasesDir}/${v}`));
    }
  }
  return {
    paths,
    releases,
    missingPackages: opts.checkPackages ? await missingDebianPackages(debianPackages) : [],
    units: await unitStates(opts.root),
    hostname: nodeHostname(opts.root),
    mounts: mountPoints(opts.root),
  };
}

/** Packages of `names` dpkg does not list as installed. */
export async function missingDebianPackages(names: string[]): Promise<string[]> {
  const res = await run('dpkg-query', ['-W', '-f', '${Package} ${Status}\n', ...names], { allowFailure: true }).catch(() => undefined);
  if (!res) throw new Error('dpkg-query is not available: install these packages yourself and pass --no-packages: ' + names.join(' '));
  const installed = new Set(
    res.stdout
      .split('\n')
      .filter((l) => l.endsWith(' install ok installed'))
      .map((l) => l.split(' ')[0]),
  );
  return names.filter((n) => !installed.has(n));
}

/**
 * Enabled: from `systemctl [--root] is-enabled`, which works without a running systemd.
 * Active: only on the real root, where a service manager runs.
 */
async function unitStates(root: string): Promise<Record<string, UnitState>> {
  const present = allUnits.filter((u) => existsSync(under(root, `/etc/systemd/system/${u}`)));
  const states: Record<string, UnitState> = {};
  for (const unit of present) {
    const rootArg = root ? [`--root=${root}`] : [];
    const enabled = await run('systemctl', [...rootArg, 'is-enabled', unit], { allowFailure: true }).then((r) => r.stdout.trim() === 'enabled', () => false);
    const active = root ? undefined : await run('systemctl', ['is-active', unit], { allowFailure: true }).then((r) => r.stdout.trim() === 'active', () => false);
    states[unit] = { enabled, active };
  }
  return states;
}

function nodeHostname(root: string): string {
  if (root) {
    try {
      const name = readFileSync(join(root, 'etc/hostname'), 'utf8').trim();
      if (name) return name;
    } catch {
      // no hostname file in the alternate root: this machine's name stands in.
    }
  }
  return hostname();
}

/** Mount points as node paths (under --root, those inside it with the root taken off). */
function mountPoints(root: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const points = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\040/g, ' '));
  if (!root) return points;
  return points.filter((p) => p === root || p.startsWith(`${root}/`)).map((p) => p.slice(root.length) || '/');
}
