// `berth doctor`'s verdicts: pure functions from the gathered facts (facts.ts) to findings, one
// list per check, in the order an operator fixes things (config, kernel, runtimes, network,
// resources, then berthd itself). Nothing here reads the system.
import type { ComponentName } from '../../lib/component.js';
import type { ComponentConfigs } from '../../berthd/config.js';
import type { DoctorFacts, KernelModule, NodeRuntimeFacts } from './facts.js';

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Finding {
  status: Verdict;
  /** What was checked, e.g. "module overlay", "containerd". */
  name: string;
  finding: string;
  /** What to do about it; set whenever status is not ok. */
  fix?: string;
}

export interface Check {
  name: string;
  evaluate(facts: DoctorFacts): Finding[];
}

const ok = (name: string, finding: string): Finding => ({ status: 'ok', name, finding });
const warn = (name: string, finding: string, fix: string): Finding => ({ status: 'warn', name, finding, fix });
const fail = (name: string, finding: string, fix: string): Finding => ({ status: 'fail', name, finding, fix });

const GiB = 1024 ** 3;
/** Below this much free space a root fails: an image pull or a volume no longer fits. */
export const minFreeBytes = GiB;
/** Below this share free a root warns: kubelet's default hard eviction is nodefs.available<10%. */
export const minFreeRatio = 0.1;
/** The oldest Node release line that is still supported upstream (Node 20 ended in April 2026). */
export const minNodeMajor = 22;
/** The file berth install writes into the CNI configuration directory. */
export const berthNetworkFile = '10-berth.conflist';

function components(facts: DoctorFacts): Partial<ComponentConfigs> {
  return facts.config.config?.components ?? {};
}

function enabledNames(facts: DoctorFacts): ComponentName[] {
  return Object.keys(components(facts)) as ComponentName[];
}

const configCheck: Check = {
  name: 'config',
  evaluate({ config }) {
    if (config.missing) return [fail('config', `${config.path} does not exist`, `run berth install (it writes commented defaults), or pass --config FILE`)];
    if (!config.config) return [fail('config', config.error ?? `${config.path} is not valid`, `correct the setting named above in ${config.path}`)];
    const c = config.config;
    return [ok('config', `${config.path}: ${Object.keys(c.components).join(', ')} enabled${c.http ? `, berthd http on ${c.http}` : ''}`)];
  },
};

/** Why each module matters, and whether the configuration needs it (false: a warning at most). */
function moduleNeed(facts: DoctorFacts, module: KernelModule): { why: string; required: boolean } {
  const c = components(facts);
  switch (module) {
    case 'overlay':
      return { why: 'containerd\'s overlayfs snapshotter', required: c.cri?.snapshotter === 'overlayfs' };
    case 'br_netfilter':
      return { why: 'kube-proxy sees traffic between pods on one bridge', required: false };
    case 'vxlan':
      return { why: 'the overlay component\'s VXLAN device', required: c.overlay !== undefined };
    case 'loop':
      return { why: 'csi filesystem and block volumes', required: c.csi !== undefined };
  }
}

const moduleChecks: Check[] = (['overlay', 'br_netfilter', 'vxlan', 'loop'] as const).map((module) => ({
  name: `module ${module}`,
  evaluate(facts) {
    const name = `module ${module}`;
    const { why, required } = moduleNeed(facts, module);
    const state = facts.modules[module];
    const persist = `modprobe ${module} && echo ${module} > /etc/modules-load.d/berth-${module}.conf`;
    if (state === 'loaded' || state === 'builtin') return [ok(name, `${state} (${why})`)];
    // The kernel loads overlay, vxlan and loop by itself on first use; br_netfilter never.
    if (state === 'loadable') {
      if (module === 'br_netfilter') return [warn(name, `not loaded: ${why} only with it`, persist)];
      return [ok(name, `loadable, the kernel loads it on first use (${why})`)];
    }
    const install = `install the kernel's modules package (Debian: linux-image-$(uname -r)) or use a kernel with ${module} built in`;
    if (required) return [fail(name, `not in this kernel: needed by ${why}`, install)];
    if (module === 'br_netfilter') return [warn(name, `not in this kernel: without it not all of ${why}`, install)];
    return [ok(name, `not in this kernel; not needed by this configuration (${why})`)];
  },
}));

const requiredControllers = ['cpu', 'memory', 'pids'];
const wantedControllers = ['cpuset', 'hugetlb'];

const cgroupCheck: Check = {
  name: 'cgroups',
  evaluate({ cgroup }) {
    const has = new Set(cgroup.controllers);
    // v1 calls the block I/O controller blkio, v2 io.
    const io = cgroup.mode === 'v2' ? 'io' : 'blkio';
    const missing = requiredControllers.filter((c) => !has.has(c));
    const missingWanted = [...wantedControllers, io].filter((c) => !has.has(c));
    const list = `controllers ${cgroup.controllers.join(', ') || 'none'}`;
    const findings: Finding[] = [];
    if (missing.length) findings.push(fail('cgroups', `${cgroup.mode} without the ${missing.join(', ')} controller(s): pods' limits cannot be enforced (${list})`, `enable them on the kernel command line (cgroup_enable=${missing.join(',')}) or mount their hierarchies`));
    else if (cgroup.mode !== 'v2') findings.push(warn('cgroups', `${cgroup.mode === 'hybrid' ? 'hybrid (v1 controllers)' : 'v1'}: Kubernetes keeps cgroup v1 in maintenance mode since 1.31 and newer kubelets refuse it unless failCgroupV1 is false (${list})`, 'boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2, or set failCgroupV1: false in kubelet\'s configuration'));
    else findings.push(ok('cgroups', `v2, ${list}`));
    if (!missing.length && missingWanted.length) findings.push(warn('cgroup controllers', `${missingWanted.join(', ')} not available: pods asking for them (cpusets, huge pages, I/O weights) get none`, 'enable them in the kernel or the parent cgroup\'s cgroup.subtree_control'));
    return findings;
  },
};

const cgroupDriverCheck: Check = {
  name: 'cgroup driver',
  evaluate({ config, kubelet, systemdRunning }) {
    const cri = config.config?.components.cri;
    const name = 'cgroup driver';
    if (!cri) return [ok(name, 'cri is not enabled')];
    const driver = cri.cgroupDriver;
    const where = `cri.cgroupDriver in ${config.path}`;
    if (driver === 'systemd' && !systemdRunning) return [fail(name, `cri uses systemd but PID 1 is not systemd`, `set ${where} to cgroupfs (and kubelet's cgroupDriver with it)`)];
    if (!kubelet) return [ok(name, `cri uses ${driver} (no kubelet configuration to compare with)`)];
    if (kubelet.error) return [warn(name, `cri uses ${driver}; kubelet's ${kubelet.path} cannot be read: ${kubelet.error}`, `make ${kubelet.path} valid YAML with cgroupDriver: ${driver}`)];
    // KubeletConfiguration's default is cgroupfs.
    const theirs = kubelet.cgroupDriver ?? 'cgroupfs';
    if (theirs !== driver) return [fail(name, `cri uses ${driver} but kubelet (${kubelet.path}) uses ${theirs}: kubelet and the runtime would place pods in different cgroup trees`, `set ${where} and cgroupDriver in ${kubelet.path} to the same driver (systemd where systemd is PID 1), then restart both`)];
    return [ok(name, `${driver}, as kubelet's ${kubelet.path}`)];
  },
};

const userNamespaceCheck: Check = {
  name: 'user namespaces',
  evaluate({ maxUserNamespaces }) {
    const name = 'user namespaces';
    if (maxUserNamespaces === undefined) return [warn(name, 'this kernel has no user namespaces (no /proc/sys/user/max_user_namespaces): pods with hostUsers: false cannot run', 'use a kernel built with CONFIG_USER_NS')];
    if (maxUserNamespaces === 0) return [warn(name, 'user.max_user_namespaces is 0: pods with hostUsers: false cannot run', 'sysctl -w user.max_user_namespaces=65536 (and persist it in /etc/sysctl.d/99-berth.conf)')];
    return [ok(name, `up to ${maxUserNamespaces}`)];
  },
};

const sysctlCheck: Check = {
  name: 'sysctls',
  evaluate({ sysctls, modules }) {
    const findings: Finding[] = [];
    const forward = sysctls['net.ipv4.ip_forward'];
    const fixSysctl = (key: string) => `sysctl -w ${key}=1 and persist it: echo ${key}=1 > /etc/sysctl.d/99-berth.conf`;
    if (forward === '1') findings.push(ok('sysctl net.ipv4.ip_forward', '1'));
    // berth-bridge (as gateway) and the overlay turn it on themselves, so a 0 only warns.
    else findings.push(warn('sysctl net.ipv4.ip_forward', `${forward ?? 'absent'}: pods reach beyond the node only once berth's network plugins turn it on`, fixSysctl('net.ipv4.ip_forward')));
    const loaded = modules.br_netfilter === 'loaded' || modules.br_netfilter === 'builtin';
    const bridgeNf = sysctls['net.bridge.bridge-nf-call-iptables'];
    if (loaded && bridgeNf !== undefined) {
      if (bridgeNf === '1') findings.push(ok('sysctl net.bridge.bridge-nf-call-iptables', '1'));
      else findings.push(fail('sysctl net.bridge.bridge-nf-call-iptables', `${bridgeNf}: Services do not work between pods on the same bridge (kube-proxy's rules never see that traffic)`, fixSysctl('net.bridge.bridge-nf-call-iptables')));
    }
    return findings;
  },
};

const swapCheck: Check = {
  name: 'swap',
  evaluate({ swaps, kubelet }) {
    if (swaps.length === 0) return [ok('swap', 'off')];
    if (kubelet?.failSwapOn === false) return [ok('swap', `on (${swaps.join(', ')}); kubelet's failSwapOn is false`)];
    return [warn('swap', `on (${swaps.join(', ')}): kubelet refuses to start with swap on (failSwapOn)`, 'swapoff -a and remove the swap entries from /etc/fstab, or set failSwapOn: false (and memorySwap) in kubelet\'s configuration')];
  },
};

/** [major, minor] of a version string such as "v1.6.20" or "1.7.0-rc.1"; undefined if none. */
export function versionOf(text: string): [number, number] | undefined {
  const m = /(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

const containerdCheck: Check = {
  name: 'containerd',
  evaluate({ config, containerd }) {
    const cri = config.config?.components.cri;
    if (!cri || !containerd) return [ok('containerd', 'not checked: cri is not enabled')];
    const socket = containerd.socket;
    const start = `start containerd (apt-get install containerd; systemctl enable --now containerd), or set cri.containerd in ${config.path} to its socket`;
    if (containerd.state === 'missing') return [fail('containerd', `no socket at ${socket} (cri.containerd)`, start)];
    if (containerd.state === 'refused') return [fail('containerd', `${socket} refuses connections: containerd is not running`, start)];
    if (!containerd.version) return [fail('containerd', `${socket} accepts but does not answer Version: ${containerd.error ?? 'no reply'}`, 'restart containerd and look at its log (journalctl -u containerd)')];
    const v = versionOf(containerd.version);
    if (v && (v[0] < 1 || (v[0] === 1 && v[1] < 6))) return [fail('containerd', `${containerd.version} at ${socket}: berth needs 1.6 or newer`, 'upgrade containerd to 1.6 or newer')];
    return [ok('containerd', `${containerd.version} at ${socket}`)];
  },
};

const runtimeCheck: Check = {
  name: 'runtimes',
  evaluate({ runtimes, config }) {
    return runtimes.map((r) => {
      const name = `runtime ${r.binary}`;
      const used = r.handlers.length ? `runtime handler${r.handlers.length > 1 ? 's' : ''} ${r.handlers.join(', ')}` : 'no runtime handler uses it';
      if (r.version) return ok(name, `${r.version} (${used})`);
      if (!r.handlers.length) return ok(name, `not installed (${used})`);
      const why = r.error ?? 'it does not run';
      const install = `install ${r.binary} (Debian: apt-get install ${r.binary.split('/').pop()})`;
      if (r.isDefault) return fail(name, `${why}: the default ${used} cannot start containers`, install);
      return warn(name, `${why}: pods asking for ${used} cannot start`, `${install}, or remove cri.runtimeHandlers.${r.handlers[0]} from ${config.path}`);
    });
  },
};

const cniCheck: Check = {
  name: 'cni',
  evaluate(facts) {
    const { cni } = facts;
    const cri = components(facts).cri !== undefined;
    // Without cri, berth's runtime does not read these directories: findings only warn.
    const bad = cri ? fail : warn;
    const findings: Finding[] = [];
    if (!cni.confDirExists) {
      findings.push(bad('cni config', `${cni.confDir} does not exist`, `mkdir -p ${cni.confDir}; berth install writes ${berthNetworkFile} there`));
    } else {
      const sorted = [...cni.confFiles].sort();
      const before = sorted.filter((f) => f < berthNetworkFile);
      if (before.length) findings.push(warn('cni config', `conflicting: ${before.join(', ')} sort${before.length === 1 ? 's' : ''} before ${berthNetworkFile} in ${cni.confDir}, and the runtime uses the first network it finds`, `move ${before.join(', ')} out of ${cni.confDir} (or remove the other network's plugin)`));
      else if (sorted.includes(berthNetworkFile)) findings.push(ok('cni config', `${cni.confDir}/${berthNetworkFile} comes first${sorted.length > 1 ? ` (of ${sorted.length})` : ''}`));
      else if (sorted.length) findings.push(warn('cni config', `no ${berthNetworkFile} in ${cni.confDir}: pods get the network of ${sorted[0]}`, `berth install writes ${berthNetworkFile}`));
      else findings.push(bad('cni config', `no network configuration in ${cni.confDir}: pods cannot get a network`, `berth install writes ${berthNetworkFile}`));
    }
    for (const dir of cni.binDirs) {
      if (!dir.exists) findings.push(bad('cni bin', `${dir.path} does not exist`, `mkdir -p ${dir.path}; berth install links berth's CNI plugins there`));
      else if (!dir.hasBerthPlugins) findings.push(warn('cni bin', `${dir.path} has no berth plugins (berth-bridge, berth-loopback...)`, `berth install links them there`));
      else findings.push(ok('cni bin', `${dir.path} has berth's plugins`));
    }
    return findings;
  },
};

/** Command lines that are berth's own daemons (berthd, or a component's own executable). */
const berthDaemon = /\b(berthd|berth-cri|berth-csi|berth-gpu|berth-overlayd|berth-cnid)\b/;

/**
 * A command line short enough for one finding: node's own options (`node --expose-gc ... script`) are
 * dropped so the script shows, then the rest is cut at 120 characters.
 */
export function shownCommand(command: string): string {
  const words = command.split(' ');
  if (/(^|\/)node$/.test(words[0] ?? '')) {
    let i = 1;
    while (i < words.length && words[i]!.startsWith('-')) i++;
    words.splice(1, i - 1);
  }
  const shown = words.join(' ');
  return shown.length > 120 ? `${shown.slice(0, 117)}...` : shown;
}

const portCheck: Check = {
  name: 'ports',
  evaluate({ ports, berthd }) {
    return ports.map((p) => {
      const name = `port ${p.port}`;
      const where = `${p.what}, ${p.address}`;
      if (p.holder === 'free') return ok(name, `free (${where})`);
      const who = p.holder.pid ? `pid ${p.holder.pid}${p.holder.command ? ` (${shownCommand(p.holder.command)})` : ''}` : 'a process doctor cannot see';
      if ((p.holder.command && berthDaemon.test(p.holder.command)) || (!p.holder.pid && p.what === 'berthd http' && berthd?.unreachable === undefined)) return ok(name, `in use by berth (${where}): ${who}`);
      return fail(name, `${where} is in use by ${who}`, `stop that process, or give ${p.what} another port in the configuration`);
    });
  },
};

function bytes(n: number): string {
  return n >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`;
}

const diskCheck: Check = {
  name: 'disk',
  evaluate({ disks }) {
    return disks.map((d) => {
      const name = `disk ${d.path}`;
      const share = d.totalBytes > 0 ? d.freeBytes / d.totalBytes : 0;
      const text = `${bytes(d.freeBytes)} free of ${bytes(d.totalBytes)} (${Math.round(share * 100)}%) for ${d.roots.join(', ')}`;
      if (d.freeBytes < minFreeBytes) return fail(name, `${text}: images and volumes no longer fit`, `free space on the filesystem of ${d.path}, or move those roots to a larger one`);
      if (share < minFreeRatio) return warn(name, `${text}: kubelet evicts pods below 10% free (nodefs.available)`, `free space on the filesystem of ${d.path}`);
      return ok(name, text);
    });
  },
};

const nodeCheck: Check = {
  name: 'node runtime',
  evaluate({ node }) {
    const name = 'node runtime';
    // The runtime that matters is the one running berthd, else the pinned one berth ships.
    const chosen: NodeRuntimeFacts | undefined = node.find((n) => n.role === 'berthd' && n.version) ?? node.find((n) => n.role === 'pinned') ?? node.find((n) => n.role === 'current');
    if (!chosen) return [fail(name, 'no Node runtime found', 'run berth install (it ships a pinned Node runtime)')];
    const label = chosen.role === 'berthd' ? 'running berthd' : chosen.role === 'pinned' ? 'pinned' : 'running this command';
    if (!chosen.version) return [fail(name, `${chosen.path} (${label}) does not run: ${chosen.error ?? 'no version'}`, 'run berth install again to restore the pinned runtime')];
    const major = Number(/^v?(\d+)/.exec(chosen.version)?.[1] ?? 0);
    const text = `Node ${chosen.version} (${label}: ${chosen.path})`;
    if (major < 20) return [fail(name, `${text}: berth needs Node ${minNodeMajor} or newer`, 'run berth install (it ships a pinned Node runtime)')];
    if (major < minNodeMajor) return [warn(name, `${text}: this release line reached its end of life; berth wants ${minNodeMajor} or newer`, 'run berth install (it ships a pinned Node runtime) or upgrade Node')];
    if (chosen.role === 'current') return [warn(name, `${text}: no pinned runtime found beside berth`, 'run berth install (it ships a pinned Node runtime)')];
    return [ok(name, text)];
  },
};

const readinessCheck: Check = {
  name: 'berthd',
  evaluate(facts) {
    const { berthd, config } = facts;
    if (!berthd || !config.config) return [];
    if (berthd.address === '') return [warn('berthd', 'http is off in the configuration: readiness cannot be asked', `set http (e.g. 127.0.0.1:9400) in ${config.path}`)];
    if (berthd.unreachable !== undefined) return [warn('berthd', `not running (nothing answers on ${berthd.address}: ${berthd.unreachable})`, 'start berthd: systemctl enable --now berthd')];
    return enabledNames(facts).map((name) => {
      const r = berthd.components.find((c) => c.name === name);
      const label = `component ${name}`;
      const body = r?.body.trim().replace(/^[a-z]+: /, '') ?? '';
      if (r?.code === 200) return ok(label, 'ready');
      if (!r || r.code === 404) return fail(label, `enabled in ${config.path} but berthd does not run it`, 'reload berthd so it reads the file again: systemctl reload berthd (SIGHUP)');
      return fail(label, body || `not ready (HTTP ${r.code})`, `look at its log: journalctl -u berthd | grep '"component":"${name}"'`);
    });
  },
};

/** Every check, in the order they are reported. */
export const checks: readonly Check[] = [
  configCheck,
  ...moduleChecks,
  cgroupCheck,
  cgroupDriverCheck,
  userNamespaceCheck,
  sysctlCheck,
  swapCheck,
  containerdCheck,
  runtimeCheck,
  cniCheck,
  portCheck,
  diskCheck,
  nodeCheck,
  readinessCheck,
];

export function evaluate(facts: DoctorFacts, list: readonly Check[] = checks): Finding[] {
  return list.flatMap((c) => c.evaluate(facts));
}

/** The node can run pods when nothing failed (warnings allowed). */
export function canRunPods(findings: readonly Finding[]): boolean {
  return findings.every((f) => f.status !== 'fail');
}
