import { posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseBerthdConfig, type BerthdConfig } from '../../berthd/config.js';
import type { ComponentName } from '../../lib/component.js';
import { BerthError } from '../../lib/errors.js';
import {
  allUnits,
  generatedMarker,
  isOurConflist,
  isOurCrictl,
  renderComponentConfig,
  renderConflist,
  renderCrictl,
  renderDefaultConfig,
  renderKubelet,
  renderOverlayNetwork,
  renderUnit,
  renderUnitEnv,
  separateUnitEnv,
  unitsFor,
  unitsToStart,
} from './render.js';
import type { HostState } from './state.js';

// `berth install` as data: from what is on disk (HostState), the release and the options, the
// list of actions that brings the node to the installed state, each saying whether it creates,
// updates or leaves something unchanged. No I/O here; apply.ts carries a plan out.

export type Change = 'created' | 'updated' | 'unchanged' | 'removed' | 'kept';

export type Action =
  | { kind: 'packages'; packages: string[] }
  | { kind: 'release'; path: string; version: string; change: Change }
  | { kind: 'file'; path: string; content: string; mode: number; change: Change; note?: string }
  | { kind: 'link'; path: string; target: string; change: Change }
  | { kind: 'remove'; path: string; recursive: boolean }
  /** Remove a directory only if it is empty (a directory berth made but others may share). */
  | { kind: 'rmdir'; path: string }
  /** Under --root the executor adds --root=DIR (enable/disable work on files alone). */
  | { kind: 'systemctl'; args: string[] }
  | { kind: 'print'; text: string };

export interface Plan {
  actions: Action[];
  warnings: string[];
}

export const defaultComponents: ComponentName[] = ['cri', 'csi', 'cnid'];
export const configPath = '/etc/berth/berth.yaml';
export const crictlPath = '/etc/crictl.yaml';
export const kubeletDir = '/etc/berth/kubelet';
/** The directories install created outside what it removes anyway (apply.ts keeps it; uninstall reads it). */
export const createdDirsRecord = (prefix: string): string => `${prefix}/created-dirs.json`;

export interface InstallOptions {
  prefix: string;
  /** undefined: the defaults (only used when the config file is written). */
  components?: ComponentName[];
  separateUnits: boolean;
  /** The bridge network's subnet, or the overlay's whole network. */
  podCidr: string;
  /** --config: the file's text and its path (for messages). */
  config?: { text: string; source: string };
  nodeName?: string;
  noPackages: boolean;
  /** '' for the real root; otherwise an alternate root: no service manager is asked. */
  root: string;
}

/** What the planner needs of the release (read from its tree by main.ts). */
export interface PlannedRelease {
  version: string;
  digest: string;
  /** Unit file name -> text, from the release's systemd/. */
  units: Record<string, string>;
  /** share/berth.yaml. */
  configTemplate: string;
  /** The executables in the release's cni/. */
  cniPlugins: string[];
}

/** The configuration file's text, parsed and validated with berthd's own rules. */
export function parseConfigText(text: string, source: string): BerthdConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new BerthError('invalid-config', `${source}: not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new BerthError('invalid-config', `${source}: the top level must be a mapping of settings`);
  return parseBerthdConfig(doc as Record<string, unknown>, source);
}

/** The version an installed link (<prefix>/current -> releases/<v>) points at. */
export function linkedVersion(state: HostState, path: string): string | undefined {
  const s = state.paths[path];
  return s?.kind === 'link' ? posix.basename(s.target) : undefined;
}

/** Helpers that compare a wanted file or link with the host. */
class PlanBuilder {
  readonly actions: Action[] = [];
  readonly warnings: string[] = [];
  constructor(readonly state: HostState) {}

  file(path: string, content: string, mode = 0o644, note?: string): Change {
    const s = this.state.paths[path];
    if (s && s.kind !== 'file') throw new BerthError('failed-precondition', `${path} exists and is not a regular file (${s.kind}): move it away first`);
    const change: Change = !s ? 'created' : s.content === content ? 'unchanged' : 'updated';
    this.actions.push({ kind: 'file', path, content, mode, change, ...(note ? { note } : {}) });
    return change;
  }

  link(path: string, target: string): Change {
    const s = this.state.paths[path];
    if (s && s.kind !== 'link' && s.kind !== 'file') throw new BerthError('failed-precondition', `${path} exists and is not a file or symlink (${s.kind}): move it away first`);
    const change: Change = !s ? 'created' : s.kind === 'link' && s.target === target ? 'unchanged' : 'updated';
    this.actions.push({ kind: 'link', path, target, change });
    return change;
  }

  kept(path: string, note: string): void {
    this.actions.push({ kind: 'file', path, content: '', mode: 0, change: 'kept', note });
  }

  remove(path: string, recursive = false): boolean {
    if (!this.state.paths[path]) return false;
    this.actions.push({ kind: 'remove', path, recursive });
    return true;
  }
}

const changed = (c: Change): boolean => c === 'created' || c === 'updated' || c === 'removed';

/** The configuration that install uses: --config, else the file on disk, else the template. */
function chooseConfig(b: PlanBuilder, release: PlannedRelease, opts: InstallOptions): { config: BerthdConfig; raw: Record<string, unknown>; change: Change } {
  const existing = b.state.paths[configPath];
  let text: string;
  let source = configPath;
  if (opts.config) {
    text = opts.config.text;
    source = opts.config.source;
  } else if (existing?.kind === 'file') {
    text = existing.content;
    if (opts.components) b.warnings.push(`--components: ${configPath} exists, so it decides which components run (edit it, or pass --config)`);
  } else {
    text = renderDefaultConfig(release.configTemplate, opts.components ?? defaultComponents, opts.nodeName ?? b.state.hostname);
  }
  const config = parseConfigText(text, source);
  const change = b.file(configPath, text, 0o644);
  return { config, raw: parseYaml(text) as Record<string, unknown>, change };
}

export function planInstall(state: HostState, release: PlannedRelease, opts: InstallOptions): Plan {
  const b = new PlanBuilder(state);
  const { prefix } = opts;
  const atRoot = opts.root === '';
  if (!opts.noPackages && state.missingPackages.length > 0) b.actions.push({ kind: 'packages', packages: state.missingPackages });

  // The release: releases/<v>, current -> it, previous -> the one it replaces.
  const releaseDir = `${prefix}/releases/${release.version}`;
  const had = state.releases[release.version];
  const releaseChange: Change = !(release.version in state.releases) ? 'created' : had === release.digest ? 'unchanged' : 'updated';
  b.actions.push({ kind: 'release', path: releaseDir, version: release.version, change: releaseChange });
  const oldCurrent = linkedVersion(state, `${prefix}/current`);
  const upgrade = oldCurrent !== undefined && oldCurrent !== release.version;
  let previous = linkedVersion(state, `${prefix}/previous`);
  if (upgrade) {
    previous = oldCurrent;
    b.link(`${prefix}/previous`, `releases/${oldCurrent}`);
  }
  const currentChange = b.link(`${prefix}/current`, `releases/${release.version}`);
  for (const v of Object.keys(state.releases)) {
    if (v !== release.version && v !== previous) b.actions.push({ kind: 'remove', path: `${prefix}/releases/${v}`, recursive: true });
  }
  b.link('/usr/local/bin/berth', `${prefix}/current/bin/berth`);

  const { config, raw, change: configChange } = chooseConfig(b, release, opts);
  const components = Object.keys(config.components) as ComponentName[];
  const overlay = config.components.overlay;
  if (overlay?.networkConfig && overlay.leaseStore !== 'etcd') {
    // Only when absent: the network of a running overlay is the operator's to change.
    if (!state.paths[overlay.networkConfig]) b.file(overlay.networkConfig, renderOverlayNetwork(opts.podCidr));
    else b.actions.push({ kind: 'file', path: overlay.networkConfig, content: '', mode: 0, change: 'unchanged' });
  }

  // Units of this mode; those of the other mode (left by an earlier install) go.
  const units = unitsFor(opts.separateUnits, components);
  const stale = allUnits.filter((u) => !units.includes(u) && state.paths[`/etc/systemd/system/${u}`]);
  if (stale.length > 0) {
    if (atRoot) b.actions.push({ kind: 'systemctl', args: ['stop', ...stale] });
    const enabled = stale.filter((u) => state.units[u]?.enabled);
    if (enabled.length > 0) b.actions.push({ kind: 'systemctl', args: ['disable', ...enabled] });
    for (const u of stale) b.remove(`/etc/systemd/system/${u}`);
  }
  let unitsChanged = stale.length > 0;
  for (const u of units) {
    const text = release.units[u];
    if (text === undefined) throw new BerthError('not-found', `the release has no systemd/${u}`);
    unitsChanged = changed(b.file(`/etc/systemd/system/${u}`, renderUnit(text, prefix))) || unitsChanged;
  }
  // Separate units read their own files, derived from berth.yaml.
  let derivedChanged = false;
  for (const name of ['cri', 'csi', 'gpu', 'overlay'] as const) {
    const env = separateUnitEnv[name]!;
    const file = `/etc/berth/${name}.yaml`;
    if (opts.separateUnits && components.includes(name)) {
      derivedChanged = changed(b.file(file, renderComponentConfig(name, raw))) || derivedChanged;
      derivedChanged = changed(b.file(env.file, renderUnitEnv(name))) || derivedChanged;
    } else {
      for (const p of [file, env.file]) {
        const s = state.paths[p];
        if (s?.kind === 'file' && s.content.startsWith(generatedMarker)) b.remove(p);
      }
    }
  }

  // CNI: the executables, then the network.
  const cniBin = config.components.cri?.cniBinDir[0] ?? '/opt/cni/bin';
  for (const name of release.cniPlugins) b.link(`${cniBin}/${name}`, `${prefix}/current/cni/${name}`);
  for (const [p, s] of Object.entries(state.paths)) {
    if (posix.dirname(p) === cniBin && s.kind === 'link' && s.target.startsWith(`${prefix}/`) && !release.cniPlugins.includes(posix.basename(p))) b.remove(p);
  }
  const conflist = `${config.components.cri?.cniConfDir ?? '/etc/cni/net.d'}/10-berth.conflist`;
  const existingList = state.paths[conflist];
  if (existingList?.kind === 'file' && !isOurConflist(existingList.content)) b.kept(conflist, 'not berth\'s (its name is not "berth" or it uses other plugins): left as it is');
  else b.file(conflist, renderConflist(config, opts.podCidr));

  // crictl and kubelet point at berth's CRI socket.
  let kubeletNote: string | undefined;
  if (config.components.cri) {
    const crictl = state.paths[crictlPath];
    if (crictl?.kind === 'file' && !isOurCrictl(crictl.content, config)) b.kept(crictlPath, 'points at another runtime: left as it is (crictl --runtime-endpoint reaches berth)');
    else b.file(crictlPath, renderCrictl(config));
    const kubelet = renderKubelet(config);
    b.file(`${kubeletDir}/10-berth.conf`, kubelet.dropIn);
    b.file(`${kubeletDir}/kubelet-flags.env`, kubelet.flags);
    kubeletNote = `kubelet (${kubeletDir}/10-berth.conf):\n${kubelet.dropIn}`;
  }

  // systemd: reload what changed, enable and start what is not, restart on a new release.
  const start = unitsToStart(units);
  if (unitsChanged && atRoot) b.actions.push({ kind: 'systemctl', args: ['daemon-reload'] });
  const toEnable = start.filter((u) => !state.units[u]?.enabled);
  if (toEnable.length > 0) b.actions.push({ kind: 'systemctl', args: ['enable', ...toEnable] });
  if (atRoot) {
    const running = units.filter((u) => state.units[u]?.active === true);
    const toStart = start.filter((u) => state.units[u]?.active !== true);
    if (toStart.length > 0) b.actions.push({ kind: 'systemctl', args: ['start', ...toStart] });
    // New code or new unit files: restart berth's own units only. KillMode=process keeps the
    // containers (they run under containerd's shims); containerd itself is never touched.
    const newCode = changed(currentChange) || (releaseChange === 'updated' && !upgrade);
    const restart = running.filter((u) => !u.endsWith('.socket'));
    if (restart.length > 0 && (newCode || unitsChanged || derivedChanged)) b.actions.push({ kind: 'systemctl', args: ['restart', ...restart] });
    else if (restart.includes('berthd.service') && changed(configChange)) b.actions.push({ kind: 'systemctl', args: ['reload', 'berthd.service'] });
  } else {
    b.warnings.push('--root: units are enabled with systemctl --root; nothing is started, reloaded or restarted (no service manager runs there)');
  }
  if (kubeletNote) b.actions.push({ kind: 'print', text: kubeletNote });
  return { actions: b.actions, warnings: b.warnings };
}

/** `berth install --rollback`: current back to the previous release, berth's units restarted. */
export function planRollback(state: HostState, opts: Pick<InstallOptions, 'prefix' | 'root'>): Plan {
  const b = new PlanBuilder(state);
  const current = linkedVersion(state, `${opts.prefix}/current`);
  const previous = linkedVersion(state, `${opts.prefix}/previous`);
  if (!current) throw new BerthError('failed-precondition', `${opts.prefix}/current does not exist: berth is not installed under ${opts.prefix}`);
  if (!previous || !(previous in state.releases)) throw new BerthError('failed-precondition', `no previous release under ${opts.prefix} to roll back to (an upgrade keeps one)`);
  b.link(`${opts.prefix}/current`, `releases/${previous}`);
  b.link(`${opts.prefix}/previous`, `releases/${current}`);
  if (opts.root === '') {
    const running = allUnits.filter((u) => state.units[u]?.active === true && !u.endsWith('.socket'));
    if (running.length > 0) b.actions.push({ kind: 'systemctl', args: ['restart', ...running] });
  } else {
    b.warnings.push('--root: nothing is restarted (no service manager runs there)');
  }
  return { actions: b.actions, warnings: b.warnings };
}

export { PlanBuilder };
