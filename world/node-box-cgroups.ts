import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// The node box's cgroups. The node (nspawn, its systemd, containerd, berth, the pods) runs in a
// cgroup of its own in every hierarchy, made under the test runner's own cgroup, so the node's
// systemd and runc never write into the host's hierarchies (where the host's berth tests keep
// /berth.io) and destroy() can remove all of it. Inside, each cgroup v1 controller is mounted
// read-write showing only that subtree, as a node's own /sys/fs/cgroup would.

export interface BoxCgroup {
  /** The hierarchy's controllers as /proc/self/cgroup names them ("memory", "name=systemd", "" for cgroup v2). */
  controllers: string;
  /** The box's cgroup directory on the host. */
  hostDir: string;
  /** The same cgroup as a path in its hierarchy (what a fresh mount of it shows it under). */
  path: string;
  /** Where the node has this hierarchy mounted, for v1 controllers nspawn leaves read-only. */
  nodeMount?: string;
}

interface CgroupMount {
  root: string;
  mountPoint: string;
  fstype: string;
  superOptions: string[];
}

function cgroupMounts(): CgroupMount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [pre, post] = line.split(' - ');
      const f = pre!.split(' ');
      const p = post!.split(' ');
      return { root: f[3]!, mountPoint: f[4]!, fstype: p[0]!, superOptions: (p[2] ?? '').split(',') };
    })
    .filter((m) => m.fstype === 'cgroup' || m.fstype === 'cgroup2');
}

/** Make the box's cgroup in every hierarchy this process is in, under this process's own cgroup. */
export function boxCgroups(boxName: string): BoxCgroup[] {
  const mounts = cgroupMounts();
  const out: BoxCgroup[] = [];
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n').filter(Boolean)) {
    const [, controllers = '', own = '/'] = /^(\d+):([^:]*):(.*)$/.exec(line)?.slice(1) ?? [];
    const wanted = controllers.split(',').filter(Boolean);
    const mount =
      controllers === ''
        ? mounts.find((m) => m.fstype === 'cgroup2')
        : mounts.find((m) => m.fstype === 'cgroup' && wanted.every((c) => m.superOptions.includes(c)));
    if (!mount) continue;
    // A process's cgroup path is relative to its hierarchy's root; the mount may show a subtree.
    const rel = mount.root === '/' ? own : own.startsWith(mount.root) ? own.slice(mount.root.length) || '/' : undefined;
    if (rel === undefined) continue;
    const path = join(own, `node-box-${boxName}`);
    const hostDir = join(mount.mountPoint, rel, `node-box-${boxName}`);
    mkdirSync(hostDir, { recursive: true });
    if (wanted.includes('cpuset')) {
      // A new cpuset has no CPUs or memory nodes until given its parent's.
      for (const file of ['cpuset.cpus', 'cpuset.mems']) writeFileSync(join(hostDir, file), readFileSync(join(hostDir, '..', file)));
    }
    const v1Controller = controllers !== '' && !controllers.startsWith('name=');
    out.push({ controllers, hostDir, path, ...(v1Controller ? { nodeMount: `/sys/fs/cgroup/${mount.mountPoint.split('/').pop()}` } : {}) });
  }
  return out;
}

/** rmdir a cgroup and everything below it, deepest first; a cgroup whose last task is exiting is busy for a moment. */
export function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  const dirs: string[] = [];
  const walk = (d: string): void => {
    dirs.push(d);
    try {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      /* removed meanwhile */
    }
  };
  walk(dir);
  for (const d of dirs.sort((a, b) => b.length - a.length)) {
    for (let attempt = 0; ; attempt++) {
      try {
        rmdirSync(d);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || attempt >= 50) break;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      }
    }
  }
}

/**
 * The script the node runs at every boot (and the test world once more after boot, as a check):
 * /proc/sys (CNI writes sysctls), /sys and /sys/fs/cgroup read-write, and each v1 controller
 * mounted afresh read-write at the box's subtree. Idempotent.
 */
export function writableScript(cgroups: readonly BoxCgroup[]): string {
  const lines = [
    '#!/bin/sh',
    '# Written by the test world (world/node-box-cgroups.ts): systemd-nspawn hands a booted node',
    '# /proc/sys, /sys and the cgroup v1 controllers read-only; containers and CNI need them writable.',
    'set -e',
    '# ro MOUNTPOINT: whether the topmost mount there is read-only',
    "ro() { awk -v m=\"$1\" '$5 == m { split($6, o, \",\"); r = o[1] } END { exit r == \"ro\" ? 0 : 1 }' /proc/self/mountinfo; }",
    'ro /proc/sys && mount -o remount,rw /proc/sys',
    'ro /sys && mount -o remount,rw /sys',
    'ro /sys/fs/cgroup && mount -o remount,rw /sys/fs/cgroup',
    '# controller MOUNTPOINT OPTIONS SUBTREE: mount the hierarchy read-write showing only SUBTREE',
    'controller() {',
    "  root=$(awk -v m=\"$1\" '$5 == m { r = $4 } END { print r }' /proc/self/mountinfo)",
    '  # Done already: read-write at the box\'s subtree ("/" when the node has its own cgroup namespace).',
    '  if ! ro "$1" && { [ "$root" = "$3" ] || [ "$root" = / ]; }; then return 0; fi',
    '  while umount "$1" 2>/dev/null; do :; done',
    '  mkdir -p "$1" /run/node-box-cgroup',
    '  mount -t cgroup -o "$2" cgroup /run/node-box-cgroup',
    '  # In a cgroup namespace the fresh mount already shows the box as its root.',
    '  if [ -d "/run/node-box-cgroup$3" ]; then sub="$3"; else sub=/; fi',
    '  mount --bind "/run/node-box-cgroup$sub" "$1"',
    '  umount /run/node-box-cgroup',
    '}',
  ];
  for (const c of cgroups) if (c.nodeMount) lines.push(`controller ${c.nodeMount} ${c.controllers} ${c.path}`);
  return `${lines.join('\n')}\n`;
}

export const writableUnit = `# Written by the test world (world/node-box.ts): see /usr/local/lib/node-box/writable.sh.
[Unit]
Description=Make the node box's /proc/sys, /sys and cgroup controllers writable
DefaultDependencies=no
Before=sysinit.target containerd.service
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /usr/local/lib/node-box/writable.sh

[Install]
WantedBy=sysinit.target
`;
