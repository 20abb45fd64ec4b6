// `berth doctor`'s executor: reads the node (proc and sys files, a few programs' --version,
// containerd's and berthd's sockets) into DoctorFacts. Every read is guarded: a probe that
// fails becomes a fact ("missing", an error text) for checks.ts to judge, never an exception.
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { detectCgroupMode, parseMountInfo } from '../../lib/cgroups/hierarchy.js';
import { errorMessage } from '../../lib/errors.js';
import { run } from '../../lib/exec.js';
import { httpGet, probeContainerd, type LoadedConfig } from '../probes.js';
import { kernelModules, type BerthdFacts, type CniFacts, type DiskFacts, type DoctorFacts, type KernelModule, type KubeletFacts, type ModuleState, type NodeRuntimeFacts, type PortFacts, type RuntimeBinaryFacts } from './facts.js';

export const kubeletConfigFile = '/var/lib/kubelet/config.yaml';
/** Where berth install puts berth (the units run <prefix>/node/bin/node). */
export const defaultPrefix = '/usr/lib/berth';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Extra signs of a built-in feature, for kernels without modules.builtin on disk. */
const builtinSigns: Record<KernelModule, () => boolean> = {
  overlay: () => /\toverlay$/m.test(readText('/proc/filesystems') ?? ''),
  br_netfilter: () => existsSync('/proc/sys/net/bridge'),
  vxlan: () => false,
  loop: () => existsSync('/dev/loop-control'),
};

async function moduleState(module: KernelModule, loaded: Set<string> | undefined, release: string): Promise<ModuleState> {
  if (loaded?.has(module)) return 'loaded';
  const builtinList = readText(`/lib/modules/${release}/modules.builtin`) ?? '';
  // Without /proc/modules the kernel has no loadable modules: whatever /sys/module shows is built in.
  if (builtinList.includes(`/${module}.ko`) || existsSync(`/sys/module/${module}`) || builtinSigns[module]()) return 'builtin';
  const info = await run('modinfo', ['-F', 'filename', module], { allowFailure: true, timeoutMs: 3000 }).catch(() => undefined);
  if (info?.code === 0) return info.stdout.trim() === '(builtin)' ? 'builtin' : 'loadable';
  return 'missing';
}

function cgroupFacts(): DoctorFacts['cgroup'] {
  const mode = detectCgroupMode();
  if (mode === 'v2') return { mode, controllers: (readText('/sys/fs/cgroup/cgroup.controllers') ?? '').trim().split(/\s+/).filter(Boolean) };
  const mounted = parseMountInfo(readText('/proc/self/mountinfo') ?? '');
  return { mode, controllers: [...mounted.keys()].filter((c) => !c.startsWith('name=')).sort() };
}

function kubeletFacts(path: string): KubeletFacts | undefined {
  const text = readText(path);
  if (text === undefined) return undefined;
  try {
    const doc = (parseYaml(text) ?? {}) as Record<string, unknown>;
    return {
      path,
      cgroupDriver: typeof doc.cgroupDriver === 'string' ? doc.cgroupDriver : undefined,
      failSwapOn: typeof doc.failSwapOn === 'boolean' ? doc.failSwapOn : undefined,
    };
  } catch (err) {
    return { path, error: errorMessage(err) };
  }
}

async function versionLine(binary: string): Promise<{ version?: string; error?: string }> {
  try {
    const r = await run(binary, ['--version'], { allowFailure: true, timeoutMs: 3000 });
    if (r.code !== 0) return { error: `${binary} --version exited ${r.code}: ${r.stderr.trim().split('\n')[0] ?? ''}` };
    return { version: r.stdout.trim().split('\n')[0] };
  } catch (err) {
    return { error: /ENOENT/.test(errorMessage(err)) ? `${binary} is not installed (not in PATH)` : errorMessage(err) };
  }
}

async function runtimeFacts(config: LoadedConfig): Promise<RuntimeBinaryFacts[]> {
  const cri = config.config?.components.cri;
  const byBinary = new Map<string, RuntimeBinaryFacts>();
  for (const [handler, h] of Object.entries(cri?.runtimeHandlers ?? {})) {
    const r = byBinary.get(h.binary) ?? { binary: h.binary, handlers: [], isDefault: false };
    r.handlers.push(handler);
    r.isDefault ||= handler === cri!.defaultRuntimeHandler;
    byBinary.set(h.binary, r);
  }
  // runc and crun are reported even when no handler names them: an operator adding one wants to know.
  for (const binary of ['runc', 'crun']) if (!byBinary.has(binary)) byBinary.set(binary, { binary, handlers: [], isDefault: false });
  return Promise.all([...byBinary.values()].map(async (r) => ({ ...r, ...(await versionLine(r.binary)) })));
}

function cniFacts(config: LoadedConfig): CniFacts {
  const cri = config.config?.components.cri;
  const confDir = cri?.cniConfDir ?? '/etc/cni/net.d';
  const confDirExists = existsSync(confDir);
  let confFiles: string[] = [];
  try {
    confFiles = readdirSync(confDir).filter((f) => /\.(conf|conflist|json)$/.test(f));
  } catch {
    /* reported by confDirExists */
  }
  const binDirs = (cri?.cniBinDir ?? ['/opt/cni/bin']).map((path) => ({ path, exists: existsSync(path), hasBerthPlugins: existsSync(join(path, 'berth-bridge')) }));
  return { confDir, confDirExists, confFiles, binDirs };
}

/** Inodes of the TCP sockets listening on `port` (any address), from /proc/net/tcp and tcp6. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (readText(file) ?? '').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
      if (f.length > 9 && f[3] === '0A' && parseInt(f[1]!.split(':')[1]!, 16) === port) inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** The process holding one of these socket inodes, found through /proc/<pid>/fd (needs root for others' processes). */
function socketHolder(inodes: Set<string>): { pid?: number; command?: string } {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]!)) {
        // The whole command line: the checks match berth's daemons on it and shorten it only to print it.
        const command = (readText(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' ');
        return { pid: Number(pid), command };
      }
    }
  }
  return {};
}

function portFacts(config: LoadedConfig): PortFacts[] {
  const c = config.config;
  if (!c) return [];
  const wanted: { what: string; address: string; port: number }[] = [];
  if (c.http) wanted.push({ what: 'berthd http', address: c.http, port: Number(c.http.slice(c.http.lastIndexOf(':') + 1)) });
  const cri = c.components.cri;
  // Port 0 means a free port chosen at start: nothing can be in its way.
  if (cri && cri.streamPort !== 0) wanted.push({ what: 'cri streaming', address: `${cri.streamAddress}:${cri.streamPort}`, port: cri.streamPort });
  return wanted
    .filter((w) => w.port !== 0)
    .map((w) => {
      const inodes = listeningInodes(w.port);
      return { ...w, holder: inodes.size === 0 ? 'free' : socketHolder(inodes) };
    });
}

function nearestExisting(path: string): string {
  let p = path;
  while (!existsSync(p) && p !== '/') p = dirname(p);
  return p;
}

function diskFacts(config: LoadedConfig, containerdRoot: string | undefined): DiskFacts[] {
  const c = config.config?.components;
  const roots: { setting: string; path: string }[] = [];
  if (c?.cri) roots.push({ setting: 'cri.root', path: c.cri.root });
  if (c?.csi) roots.push({ setting: 'csi.root', path: c.csi.root });
  if (c?.cri) roots.push({ setting: 'containerd root', path: containerdRoot ?? '/var/lib/containerd' });
  // Roots on one filesystem share its free space: one finding per filesystem.
  const byDevice = new Map<number, DiskFacts>();
  for (const r of roots) {
    const at = nearestExisting(r.path);
    try {
      const dev = statSync(at).dev;
      const known = byDevice.get(dev);
      if (known) {
        known.roots.push(`${r.setting} ${r.path}`);
        continue;
      }
      const s = statfsSync(at);
      byDevice.set(dev, { roots: [`${r.setting} ${r.path}`], path: at, freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize });
    } catch {
      /* an unreadable path: the component reports it when it starts */
    }
  }
  return [...byDevice.values()];
}

async function nodeFacts(ports: PortFacts[], prefix: string): Promise<NodeRuntimeFacts[]> {
  const found: NodeRuntimeFacts[] = [];
  const probe = async (role: NodeRuntimeFacts['role'], path: string) => found.push({ role, path, ...(await versionLine(path)) });
  const http = ports.find((p) => p.what === 'berthd http');
  if (http && http.holder !== 'free' && http.holder.pid && /\bberthd\b/.test(http.holder.command ?? '')) {
    try {
      await probe('berthd', realpathSync(`/proc/${http.holder.pid}/exe`));
    } catch {
      /* it exited meanwhile */
    }
  }
  // The pinned runtime sits beside the CLI's own tree (dist/ or the install prefix): <tree>/node/bin/node.
  let self: string | undefined;
  try {
    self = join(dirname(realpathSync(process.argv[1] ?? '')), '../node/bin/node');
  } catch {
    /* not started from a file */
  }
  for (const candidate of [self, join(prefix, 'node/bin/node')]) {
    if (candidate && existsSync(candidate)) {
      await probe('pinned', realpathSync(candidate));
      break;
    }
  }
  found.push({ role: 'current', path: process.execPath, version: process.version });
  return found;
}

async function berthdFacts(config: LoadedConfig): Promise<BerthdFacts | undefined> {
  const c = config.config;
  if (!c) return undefined;
  const facts: BerthdFacts = { address: c.http, components: [] };
  if (!c.http) return facts;
  for (const name of Object.keys(c.components)) {
    try {
      const r = await httpGet(c.http, `/readyz/${name}`);
      facts.components.push({ name, code: r.code, body: r.body });
    } catch (err) {
      facts.unreachable = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
      break;
    }
  }
  return facts;
}

export interface GatherOptions {
  kubeletConfig?: string;
  prefix?: string;
}

export async function gatherFacts(config: LoadedConfig, options: GatherOptions = {}): Promise<DoctorFacts> {
  const release = (readText('/proc/sys/kernel/osrelease') ?? '').trim();
  const procModules = readText('/proc/modules');
  const loaded = procModules === undefined ? undefined : new Set(procModules.split('\n').map((l) => l.split(' ')[0]!));
  const cri = config.config?.components.cri;
  const [moduleStates, containerd, runtimes, berthd] = await Promise.all([
    Promise.all(kernelModules.map((m) => moduleState(m, loaded, release))),
    cri ? probeContainerd(cri.containerd) : Promise.resolve(undefined),
    runtimeFacts(config),
    berthdFacts(config),
  ]);
  const ports = portFacts(config);
  const maxUserNamespaces = readText('/proc/sys/user/max_user_namespaces');
  const sysctls: DoctorFacts['sysctls'] = {};
  for (const key of ['net.ipv4.ip_forward', 'net.bridge.bridge-nf-call-iptables'] as const) {
    const value = readText(`/proc/sys/${key.replace(/\./g, '/')}`);
    if (value !== undefined) sysctls[key] = value.trim();
  }
  return {
    config,
    modules: Object.fromEntries(kernelModules.map((m, i) => [m, moduleStates[i]!])) as Record<KernelModule, ModuleState>,
    cgroup: cgroupFacts(),
    systemdRunning: existsSync('/run/systemd/system'),
    maxUserNamespaces: maxUserNamespaces === undefined ? undefined : Number(maxUserNamespaces.trim()),
    sysctls,
    swaps: (readText('/proc/swaps') ?? '').split('\n').slice(1).map((l) => l.split(/\s+/)[0]!).filter(Boolean),
    kubelet: kubeletFacts(options.kubeletConfig ?? kubeletConfigFile),
    containerd,
    runtimes,
    cni: cniFacts(config),
    ports,
    disks: diskFacts(config, containerd?.root),
    node: await nodeFacts(ports, options.prefix ?? defaultPrefix),
    berthd,
  };
}
