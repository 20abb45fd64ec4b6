import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { BerthdConfig } from '../../berthd/config.js';
import { componentNames, type ComponentName } from '../../lib/component.js';
import { splitFlags, unixPath } from '../../lib/config-file.js';
import { BerthError } from '../../lib/errors.js';
import { applyPlan } from './apply.js';
import { planUninstall, purgeTargets, type UninstallOptions } from './plan-uninstall.js';
import { configPath, createdDirsRecord, crictlPath, defaultComponents, parseConfigText, planInstall, planRollback, type InstallOptions, type PlannedRelease } from './plan.js';
import { digestFiles, locateRelease, releaseFiles, type ReleaseSource } from './release.js';
import { renderDefaultConfig } from './render.js';
import { inspectHost } from './state.js';

// `berth install` and `berth uninstall`: read the host, plan, apply (cli/install/plan*.ts are
// the pure halves; apply.ts the executor).

export const installUsage = `Usage: berth install [options]        (as root, on a systemd host)

Installs the release this berth comes from: Debian packages berth needs, the release under
<prefix>/releases/<version> with <prefix>/current pointing at it (the one it replaces is kept
for --rollback), /etc/berth/berth.yaml (only if absent), the systemd units (enabled and started;
on an upgrade only berth's units restart: containers and containerd are left running), the CNI
executables in /opt/cni/bin, /etc/cni/net.d/10-berth.conflist, /etc/crictl.yaml (only if absent
or already berth's) and kubelet's settings under /etc/berth/kubelet/. Every change is printed;
a second run changes nothing.

Options:
  --config FILE          berthd's settings to install as /etc/berth/berth.yaml (default: keep
                         the one there, or write the commented defaults of share/berth.yaml)
  --components LIST      components a new berth.yaml enables (default ${defaultComponents.join(',')};
                         of ${componentNames.join(',')})
  --node-name NAME       csi.nodeId of a new berth.yaml: kubelet's node name (default: host name)
  --pod-cidr CIDR        the bridge network's subnet, or the overlay's network (default 10.88.0.0/16)
  --prefix DIR           where berth goes (default /usr/lib/berth)
  --separate-units       one unit per component (berth-cri.service, ..., berth-cnid.socket)
                         instead of berthd.service
  --no-packages          do not check or install Debian packages
  --dry-run              print what would change; change nothing
  --root DIR             install into an alternate root (like DESTDIR): every path is under DIR,
                         units are enabled with systemctl --root=DIR, nothing is started, no
                         packages are installed
  --rollback             switch <prefix>/current back to the previous release and restart
                         berth's units
  -h, --help
`;

export const uninstallUsage = `Usage: berth uninstall [options]      (as root)

Stops, disables and removes berth's units, the CNI executables' links, the CNI configuration and
/etc/crictl.yaml when they are berth's, kubelet's settings from berth and the prefix.

Options:
  --purge                also remove /etc/berth and berth's state (CRI root and state, CSI
                         volumes, overlay lease, IPAM leases), only when berth's CRI runtime
                         lists no running pod; containerd's own data is never touched
  --force                purge even when pods run or the runtime cannot be asked
  --prefix DIR           where berth is (default /usr/lib/berth)
  --dry-run              print what would be removed; change nothing
  --root DIR             an alternate root, as for install
  -h, --help
`;

const installSwitches = new Set(['--separate-units', '--no-packages', '--dry-run', '--rollback']);
const uninstallSwitches = new Set(['--purge', '--force', '--dry-run']);

function rootDir(value: string): string {
  const dir = resolve(value);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new BerthError('invalid-argument', `--root ${value}: not a directory`);
  return dir === '/' ? '' : dir;
}

function prefixDir(value: string): string {
  if (!isAbsolute(value) || value === '/') throw new BerthError('invalid-argument', `--prefix ${value}: must be an absolute path below /`);
  return value.replace(/\/+$/, '');
}

function componentList(value: string): ComponentName[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const c of items) if (!(componentNames as readonly string[]).includes(c)) throw new BerthError('invalid-argument', `--components: unknown component "${c}" (one of ${componentNames.join(', ')})`);
  if (items.length === 0) throw new BerthError('invalid-argument', '--components: name at least one component');
  return items as ComponentName[];
}

export interface ParsedInstall extends InstallOptions {
  dryRun: boolean;
  rollback: boolean;
}

export function parseInstallArgs(argv: string[]): ParsedInstall | 'help' {
  const flags = splitFlags(argv, installSwitches);
  if (flags === 'help' || flags === 'version') return 'help';
  const o: ParsedInstall = { prefix: '/usr/lib/berth', separateUnits: false, podCidr: '10.88.0.0/16', noPackages: false, root: '', dryRun: false, rollback: false };
  for (const { name, value } of flags) {
    if (installSwitches.has(name)) {
      const on = value === undefined || value !== 'false';
      if (name === '--separate-units') o.separateUnits = on;
      else if (name === '--no-packages') o.noPackages = on;
      else if (name === '--dry-run') o.dryRun = on;
      else o.rollback = on;
      continue;
    }
    if (value === undefined) throw new BerthError('invalid-argument', `${name}: a value is required (see berth install --help)`);
    if (name === '--config') {
      let text: string;
      try {
        text = readFileSync(value, 'utf8');
      } catch (err) {
        throw new BerthError('invalid-argument', `--config ${value}: ${(err as Error).message}`);
      }
      o.config = { text, source: value };
    } else if (name === '--components') o.components = componentList(value);
    else if (name === '--node-name') o.nodeName = value;
    else if (name === '--pod-cidr') {
      if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(value)) throw new BerthError('invalid-argument', `--pod-cidr ${value}: expected an IPv4 CIDR like 10.88.0.0/16`);
      o.podCidr = value;
    } else if (name === '--prefix') o.prefix = prefixDir(value);
    else if (name === '--root') o.root = rootDir(value);
    else throw new BerthError('invalid-argument', `unknown flag ${name} (see berth install --help)`);
  }
  // An alternate root has no package manager of its own to ask.
  if (o.root) o.noPackages = true;
  return o;
}

export function parseUninstallArgs(argv: string[]): (Omit<UninstallOptions, 'pods'> & { dryRun: boolean }) | 'help' {
  const flags = splitFlags(argv, uninstallSwitches);
  if (flags === 'help' || flags === 'version') return 'help';
  const o = { prefix: '/usr/lib/berth', purge: false, force: false, root: '', dryRun: false };
  for (const { name, value } of flags) {
    if (uninstallSwitches.has(name)) {
      const on = value === undefined || value !== 'false';
      if (name === '--purge') o.purge = on;
      else if (name === '--force') o.force = on;
      else o.dryRun = on;
      continue;
    }
    if (value === undefined) throw new BerthError('invalid-argument', `${name}: a value is required (see berth uninstall --help)`);
    if (name === '--prefix') o.prefix = prefixDir(value);
    else if (name === '--root') o.root = rootDir(value);
    else throw new BerthError('invalid-argument', `unknown flag ${name} (see berth uninstall --help)`);
  }
  return o;
}

function requireRoot(root: string, dryRun: boolean, command: string): void {
  if (root || dryRun || process.getuid?.() === 0) return;
  throw new BerthError('failed-precondition', `${command} changes the system: run it as root (or with --root DIR for an alternate root, or --dry-run)`);
}

/** A file of the release by its path inside the tree. */
function releaseText(release: ReleaseSource, rel: string): string {
  for (const e of release.entries) {
    if (e.name !== rel && !rel.startsWith(`${e.name}/`)) continue;
    if ('content' in e) return e.content;
    return readFileSync(join(e.from, rel.slice(e.name.length)), 'utf8');
  }
  throw new BerthError('not-found', `the release in ${release.origin} has no ${rel}`);
}

function releaseDir(release: ReleaseSource, rel: string): string {
  const e = release.entries.find((x) => x.name === rel);
  if (!e || 'content' in e) throw new BerthError('not-found', `the release in ${release.origin} has no ${rel}/`);
  return e.from;
}

export function plannedRelease(release: ReleaseSource): PlannedRelease {
  const unitDir = releaseDir(release, 'systemd');
  const units: Record<string, string> = {};
  for (const name of readdirSync(unitDir)) if (/\.(service|socket)$/.test(name)) units[name] = readFileSync(join(unitDir, name), 'utf8');
  const cniPlugins = readdirSync(releaseDir(release, 'cni')).filter((n) => n.startsWith('berth-')).sort();
  return { version: release.version, digest: digestFiles(releaseFiles(release.entries)), units, configTemplate: releaseText(release, 'share/berth.yaml'), cniPlugins };
}

/** The configuration install will use, read early to know which paths to inspect. */
function previewConfig(opts: InstallOptions, template: string): BerthdConfig | undefined {
  const onDisk = opts.root ? join(opts.root, configPath) : configPath;
  try {
    if (opts.config) return parseConfigText(opts.config.text, opts.config.source);
    if (existsSync(onDisk)) return parseConfigText(readFileSync(onDisk, 'utf8'), configPath);
    return parseConfigText(renderDefaultConfig(template, opts.components ?? defaultComponents, opts.nodeName ?? 'node'), 'share/berth.yaml');
  } catch {
    return undefined; // the planner reports the error with its source.
  }
}

function configPaths(config: BerthdConfig | undefined): { paths: string[]; dirs: string[] } {
  const cri = config?.components.cri;
  const confDir = cri?.cniConfDir ?? '/etc/cni/net.d';
  const paths = [`${confDir}/10-berth.conflist`, crictlPath, '/var/lib/berth', '/var/lib/berth/overlay', '/run/berth'];
  if (config?.components.overlay?.networkConfig) paths.push(config.components.overlay.networkConfig);
  if (config) paths.push(...purgeTargets(config));
  return { paths, dirs: cri?.cniBinDir[0] && cri.cniBinDir[0] !== '/opt/cni/bin' ? [cri.cniBinDir[0]] : [] };
}

export async function runInstall(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const opts = parseInstallArgs(argv);
  if (opts === 'help') {
    out(installUsage);
    return 0;
  }
  requireRoot(opts.root, opts.dryRun, 'berth install');
  if (opts.rollback) {
    const state = await inspectHost({ root: opts.root, prefix: opts.prefix, extraPaths: [], extraDirs: [], checkPackages: false });
    await applyPlan(planRollback(state, opts), { root: opts.root, dryRun: opts.dryRun, out });
    return 0;
  }
  const release = locateRelease(process.argv[1]!);
  for (const w of release.warnings) out(`warning: ${w}`);
  const planned = plannedRelease(release);
  const extra = configPaths(previewConfig(opts, planned.configTemplate));
  const state = await inspectHost({ root: opts.root, prefix: opts.prefix, extraPaths: [...extra.paths, createdDirsRecord(opts.prefix)], extraDirs: extra.dirs, checkPackages: !opts.noPackages });
  out(`berth ${release.version} from ${release.origin}${opts.root ? ` into ${opts.root}` : ''}${opts.dryRun ? ' (dry run)' : ''}`);
  const plan = planInstall(state, planned, opts);
  await applyPlan(plan, { root: opts.root, dryRun: opts.dryRun, release, out, createdDirsFile: createdDirsRecord(opts.prefix) });
  return 0;
}

/** Running pods according to berth's CRI runtime (READY sandboxes). */
async function runningPods(config: BerthdConfig, root: string): Promise<UninstallOptions['pods']> {
  const socket = unixPath(config.components.cri?.listen ?? 'unix:///run/berth/cri.sock', 'cri.listen');
  const path = root ? join(root, socket) : socket;
  if (!existsSync(path)) return { unknown: `${path} does not exist (berth's CRI runtime is not running)` };
  const [{ RuntimeServiceClient, PodSandboxState }, { unixClient }, { Metadata }] = await Promise.all([import('../../proto/gen/runtime/v1/api.js'), import('../../lib/grpc/unix-socket.js'), import('@grpc/grpc-js')]);
  const client = unixClient(RuntimeServiceClient, path);
  try {
    const deadline = new Date(Date.now() + 5000);
    const res = await new Promise<{ items: unknown[] }>((res, rej) => client.listPodSandbox({ filter: { id: '', state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: {} } }, new Metadata(), { deadline }, (err, r) => (err ? rej(err) : res(r))));
    return { running: res.items.length };
  } catch (err) {
    return { unknown: `ListPodSandbox on ${path} failed: ${(err as Error).message}` };
  } finally {
    client.close();
  }
}

export async function runUninstall(argv: string[], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const opts = parseUninstallArgs(argv);
  if (opts === 'help') {
    out(uninstallUsage);
    return 0;
  }
  requireRoot(opts.root, opts.dryRun, 'berth uninstall');
  const onDisk = opts.root ? join(opts.root, configPath) : configPath;
  let config: BerthdConfig;
  try {
    config = parseConfigText(existsSync(onDisk) ? readFileSync(onDisk, 'utf8') : 'cri: {}\n', configPath);
  } catch (err) {
    // A broken berth.yaml must not keep berth from being removed: its defaults stand in.
    out(`warning: ${(err as Error).message}; using the default paths`);
    config = parseConfigText('cri: {}\n', 'defaults');
  }
  const pods: UninstallOptions['pods'] = opts.purge ? await runningPods(config, opts.root) : { running: 0 };
  const extra = configPaths(config);
  const state = await inspectHost({ root: opts.root, prefix: opts.prefix, extraPaths: [...extra.paths, createdDirsRecord(opts.prefix)], extraDirs: extra.dirs, checkPackages: false });
  const plan = planUninstall(state, config, { ...opts, pods });
  await applyPlan(plan, { root: opts.root, dryRun: opts.dryRun, out });
  return 0;
}
