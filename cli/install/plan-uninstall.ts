import { posix } from 'node:path';
import type { BerthdConfig } from '../../berthd/config.js';
import { BerthError } from '../../lib/errors.js';
import { configPath, createdDirsRecord, crictlPath, kubeletDir, PlanBuilder, type Plan } from './plan.js';
import { allUnits, generatedMarker, ipamDataDir, isOurConflist, isOurCrictl, separateUnitEnv } from './render.js';
import type { HostState } from './state.js';

// `berth uninstall` as data: the units, links and generated files berth install made, and the
// prefix; with --purge also /etc/berth and berth's state directories, only when no pod runs
// (unless --force) and never through a mount point or into containerd's own data.

export interface UninstallOptions {
  prefix: string;
  purge: boolean;
  force: boolean;
  root: string;
  /** Pods berth's CRI runtime lists, or why it could not be asked. Only needed with --purge. */
  pods: { running: number } | { unknown: string };
}

/** Paths purge must never delete, whatever the configuration says. */
const protectedPaths = new Set(['/', '/etc', '/var', '/var/lib', '/run', '/usr', '/usr/lib', '/usr/local', '/opt', '/home', '/root', '/tmp', '/srv', '/mnt']);
const containerdDirs = ['/var/lib/containerd', '/run/containerd', '/etc/containerd'];

function refuseUnsafe(path: string): string | undefined {
  const p = posix.normalize(path).replace(/\/$/, '') || '/';
  if (!p.startsWith('/')) return `${path} is not an absolute path`;
  if (protectedPaths.has(p)) return `${path} is a system directory`;
  if (containerdDirs.some((d) => p === d || p.startsWith(`${d}/`) || d.startsWith(`${p}/`))) return `${path} holds containerd's own data`;
  return undefined;
}

/** The state directories --purge removes: from the configuration, each checked. */
export function purgeTargets(config: BerthdConfig): string[] {
  const c = config.components;
  const dirs = [
    c.cri?.root ?? '/var/lib/berth/cri',
    c.cri?.state ?? '/run/berth/cri',
    c.csi?.root ?? '/var/lib/berth/volumes',
    c.overlay?.leaseFile ?? '/var/lib/berth/overlay/lease.json',
    posix.dirname(ipamDataDir),
    '/var/lib/berth/cni/overlay',
  ];
  return [...new Set(dirs)];
}

export function planUninstall(state: HostState, config: BerthdConfig, opts: UninstallOptions): Plan {
  const b = new PlanBuilder(state);
  const atRoot = opts.root === '';
  const ours = (p: string): boolean => {
    const s = state.paths[p];
    return s?.kind === 'file' && s.content.startsWith(generatedMarker);
  };

  if (opts.purge && !opts.force) {
    if ('unknown' in opts.pods) throw new BerthError('failed-precondition', `--purge: cannot tell whether pods run (${opts.pods.unknown}); start berthd, or pass --force to purge anyway`);
    if (opts.pods.running > 0) throw new BerthError('failed-precondition', `--purge: ${opts.pods.running} pod(s) still run on berth's CRI runtime: remove them first (crictl rmp -fa), or pass --force`);
  }
  const purgeDirs = opts.purge ? ['/etc/berth', ...purgeTargets(config)] : [];
  if (opts.purge) {
    for (const p of purgeDirs) {
      const why = refuseUnsafe(p);
      if (why) throw new BerthError('failed-precondition', `--purge: refusing to remove ${p}: ${why}`);
      const mounted = state.mounts.filter((m) => m === p || m.startsWith(`${p}/`));
      if (mounted.length > 0) throw new BerthError('failed-precondition', `--purge: ${p} has mounts under it (${mounted.slice(0, 3).join(', ')}): unmount them (or let berth-csi unpublish its volumes) first`);
    }
  }

  const units = allUnits.filter((u) => state.paths[`/etc/systemd/system/${u}`]);
  if (units.length > 0) {
    if (atRoot) b.actions.push({ kind: 'systemctl', args: ['stop', ...units] });
    const enabled = units.filter((u) => state.units[u]?.enabled);
    if (enabled.length > 0) b.actions.push({ kind: 'systemctl', args: ['disable', ...enabled] });
    for (const u of units) b.remove(`/etc/systemd/system/${u}`);
    if (atRoot) b.actions.push({ kind: 'systemctl', args: ['daemon-reload'] });
  }
  for (const name of ['cri', 'csi', 'gpu', 'overlay'] as const) {
    for (const p of [separateUnitEnv[name]!.file, `/etc/berth/${name}.yaml`]) if (ours(p)) b.remove(p);
  }

  const cniBin = config.components.cri?.cniBinDir[0] ?? '/opt/cni/bin';
  for (const [p, s] of Object.entries(state.paths)) {
    if (posix.dirname(p) === cniBin && s.kind === 'link' && s.target.startsWith(`${opts.prefix}/`)) b.remove(p);
  }
  const conflist = `${config.components.cri?.cniConfDir ?? '/etc/cni/net.d'}/10-berth.conflist`;
  const list = state.paths[conflist];
  if (list?.kind === 'file' && isOurConflist(list.content)) b.remove(conflist);
  const crictl = state.paths[crictlPath];
  if (crictl?.kind === 'file' && (crictl.content.startsWith(generatedMarker) || isOurCrictl(crictl.content, config))) b.remove(crictlPath);
  const kubeletFiles = Object.keys(state.paths).filter((p) => posix.dirname(p) === kubeletDir);
  for (const p of kubeletFiles) if (ours(p)) b.remove(p);
  if (state.paths[kubeletDir] && kubeletFiles.every(ours)) b.actions.push({ kind: 'rmdir', path: kubeletDir });

  const launcher = state.paths['/usr/local/bin/berth'];
  if (launcher?.kind === 'link' && launcher.target.startsWith(`${opts.prefix}/`)) b.remove('/usr/local/bin/berth');
  b.remove(opts.prefix, true);

  if (opts.purge) {
    for (const p of purgeDirs) b.remove(p, true);
    // Parents berth made, if nothing else lives there.
    for (const dir of ['/var/lib/berth/overlay', '/var/lib/berth', '/run/berth']) if (state.paths[dir]) b.actions.push({ kind: 'rmdir', path: dir });
  } else if (state.paths[configPath]) {
    b.warnings.push(`${configPath} and berth's state are kept (--purge removes them when no pod runs)`);
  }
  // The directories install made, deepest first, each only if nothing else lives there now.
  const record = state.paths[createdDirsRecord(opts.prefix)];
  if (record?.kind === 'file') {
    let dirs: string[] = [];
    try {
      dirs = (JSON.parse(record.content) as unknown[]).filter((d): d is string => typeof d === 'string' && d.startsWith('/') && d !== '/');
    } catch {
      b.warnings.push(`${createdDirsRecord(opts.prefix)} is not valid JSON: directories install made are left`);
    }
    for (const dir of dirs.sort((x, y) => y.split('/').length - x.split('/').length || (x < y ? 1 : -1))) b.actions.push({ kind: 'rmdir', path: dir });
  }
  return { actions: b.actions, warnings: b.warnings };
}
