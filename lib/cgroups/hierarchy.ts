import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { BerthError } from '../errors.js';
import type { CgroupDriver, CgroupMode } from './types.js';

// Where a cgroup's files live: which cgroup layout the host uses, where each v1 controller's
// hierarchy is mounted, and the path runc gives a container for its OCI linux.cgroupsPath.

export const defaultCgroupRoot = '/sys/fs/cgroup';

const modes = new Map<string, CgroupMode>();

/**
 * v2 when the root itself is a cgroup2 mount, hybrid when only <root>/unified is, else v1. A
 * cgroup2 mount always has cgroup.controllers at its top, which also holds in a fake test tree.
 * Cached per root: the layout does not change while the node runs.
 */
export function detectCgroupMode(root: string = defaultCgroupRoot): CgroupMode {
  const known = modes.get(root);
  if (known) return known;
  let mode: CgroupMode = 'v1';
  if (existsSync(join(root, 'cgroup.controllers'))) mode = 'v2';
  else if (existsSync(join(root, 'unified', 'cgroup.controllers'))) mode = 'hybrid';
  modes.set(root, mode);
  return mode;
}

export interface V1Hierarchy {
  /** Where the hierarchy is mounted, e.g. /sys/fs/cgroup/cpu,cpuacct. */
  mountPoint: string;
  /** The cgroup the mount shows as its top ("/" on a host, deeper inside a container). */
  mountRoot: string;
}

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * The v1 hierarchies in a /proc/<pid>/mountinfo text, by controller. A joint mount such as
 * "cpu,cpuacct" serves both names; named hierarchies appear as "name=systemd". When a controller
 * is mounted more than once, the mount under `preferUnder` wins, then the first one.
 */
export function parseMountInfo(text: string, preferUnder: string = defaultCgroupRoot): Map<string, V1Hierarchy> {
  const found = new Map<string, V1Hierarchy>();
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fsType, , superOptions = ''] = line.slice(sep + 3).split(' ');
    if (fsType !== 'cgroup' || left.length < 5) continue;
    const hierarchy = { mountRoot: unescapeMountField(left[3]!), mountPoint: unescapeMountField(left[4]!) };
    const preferred = hierarchy.mountPoint.startsWith(`${preferUnder}/`);
    for (const option of superOptions.split(',')) {
      if (option === 'rw' || option === 'ro' || option === '') continue;
      const existing = found.get(option);
      if (!existing || (preferred && !existing.mountPoint.startsWith(`${preferUnder}/`))) found.set(option, hierarchy);
    }
  }
  return found;
}

let hostHierarchies: Map<string, V1Hierarchy> | undefined;

/**
 * The v1 hierarchies under `root`. For the real root they come from /proc/self/mountinfo, read
 * once; for any other root (a test tree) from its directory names, where "cpu,cpuacct" is a
 * joint mount as on most distributions.
 */
export function v1Hierarchies(root: string = defaultCgroupRoot): Map<string, V1Hierarchy> {
  if (root === defaultCgroupRoot) {
    hostHierarchies ??= parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'), root);
    if (hostHierarchies.size > 0) return hostHierarchies;
  }
  const found = new Map<string, V1Hierarchy>();
  let entries: string[];
  try {
    entries = readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return found;
  }
  for (const name of entries) {
    for (const controller of name.split(',')) {
      if (!found.has(controller)) found.set(controller, { mountPoint: join(root, name), mountRoot: '/' });
    }
  }
  return found;
}

/**
 * The directory of cgroup `relPath` in a v1 controller's hierarchy, or undefined when the
 * controller is not mounted. A path under the mount's own root is taken relative to it.
 */
export function v1CgroupDir(controller: string, relPath: string, root: string = defaultCgroupRoot): string | undefined {
  const hierarchy = v1Hierarchies(root).get(controller);
  if (!hierarchy) return undefined;
  let inner = posix.normalize(`/${relPath}`);
  const mountRoot = hierarchy.mountRoot;
  if (mountRoot !== '/' && (inner === mountRoot || inner.startsWith(`${mountRoot}/`))) inner = inner.slice(mountRoot.length) || '/';
  return join(hierarchy.mountPoint, inner);
}

/** A v2 cgroup's directory. */
export function v2CgroupDir(relPath: string, root: string = defaultCgroupRoot): string {
  return join(root, posix.normalize(`/${relPath}`));
}

/**
 * systemd's slice naming: "a-b-c.slice" lives at a.slice/a-b.slice/a-b-c.slice, "-.slice" (or
 * "-") is the root slice. Returns the path with a leading slash, "/" for the root slice.
 */
export function expandSlice(slice: string): string {
  if (slice === '-' || slice === '-.slice') return '/';
  const suffix = '.slice';
  if (!slice.endsWith(suffix) || slice.includes('/')) throw new BerthError('invalid-argument', `cgroupsPath: invalid slice ${JSON.stringify(slice)}`);
  const base = slice.slice(0, -suffix.length);
  const parts = base.split('-');
  if (parts.some((p) => p === '')) throw new BerthError('invalid-argument', `cgroupsPath: invalid slice ${JSON.stringify(slice)}`);
  let path = '';
  let prefix = '';
  for (const part of parts) {
    prefix = prefix ? `${prefix}-${part}` : part;
    path += `/${prefix}${suffix}`;
  }
  return path;
}

/**
 * The cgroup runc creates for an OCI linux.cgroupsPath, relative to the cgroup root (or to each
 * v1 hierarchy). cgroupfs: the path as given. systemd: "slice:prefix:name" becomes
 * <expanded slice>/<prefix>-<name>.scope; an empty slice means system.slice, and a name that is
 * itself a slice is used as is (runc's rule).
 */
export function resolveCgroupPath(cgroupsPath: string, driver: CgroupDriver): string {
  if (driver === 'cgroupfs') return cgroupsPath;
  const parts = cgroupsPath.split(':');
  if (parts.length !== 3) {
    throw new BerthError('invalid-argument', `cgroupsPath: expected "slice:prefix:name" for the systemd driver, got ${JSON.stringify(cgroupsPath)}`);
  }
  const [slice, prefix, name] = parts as [string, string, string];
  if (name === '') throw new BerthError('invalid-argument', `cgroupsPath: name is empty in ${JSON.stringify(cgroupsPath)}`);
  const parent = expandSlice(slice === '' ? 'system.slice' : slice);
  const unit = name.endsWith('.slice') ? name : prefix === '' ? `${name}.scope` : `${prefix}-${name}.scope`;
  return parent === '/' ? `/${unit}` : `${parent}/${unit}`;
}
