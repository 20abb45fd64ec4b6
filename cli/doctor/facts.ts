// What `berth doctor` knows about a node, as plain data: gather.ts reads it from the system,
// checks.ts judges it. Keeping the two apart lets every verdict be tested with made-up facts.
import type { LoadedConfig, ContainerdFacts } from '../probes.js';

/** The kernel features berth needs, by module name. */
export const kernelModules = ['overlay', 'br_netfilter', 'vxlan', 'loop'] as const;
export type KernelModule = (typeof kernelModules)[number];

/**
 * How a kernel feature is present: loaded as a module, built into the kernel, loadable (modinfo
 * finds it but it is not loaded), or nowhere to be found.
 */
export type ModuleState = 'loaded' | 'builtin' | 'loadable' | 'missing';

export interface RuntimeBinaryFacts {
  /** The binary as configured (runc, crun, /usr/local/bin/runc...). */
  binary: string;
  /** The cri.runtimeHandlers that use it (empty: not configured, looked at anyway). */
  handlers: string[];
  /** Whether the default runtime handler uses it. */
  isDefault: boolean;
  /** First line of `<binary> --version`, or undefined when it did not run. */
  version?: string;
  error?: string;
}

export interface CniFacts {
  confDir: string;
  confDirExists: boolean;
  /** Network configuration files in confDir (.conf, .conflist, .json), as libcni lists them. */
  confFiles: string[];
  binDirs: { path: string; exists: boolean; hasBerthPlugins: boolean }[];
}

/** A TCP port berth listens on, and who holds it now. */
export interface PortFacts {
  /** e.g. "berthd http", "cri streaming". */
  what: string;
  address: string;
  port: number;
  /** free: nothing listens; held: the process listening (pid and command line), when it could be found. */
  holder: 'free' | { pid?: number; command?: string };
}

/** Free space of one filesystem, for the berth roots on it. */
export interface DiskFacts {
  /** The settings whose directories live on this filesystem, e.g. ["cri.root /var/lib/berth/cri"]. */
  roots: string[];
  /** The directory measured (the root itself, or its nearest existing parent). */
  path: string;
  freeBytes: number;
  totalBytes: number;
}

export interface NodeRuntimeFacts {
  /** What the runtime is to berth: the one running berthd, the pinned one, or the one running this CLI. */
  role: 'berthd' | 'pinned' | 'current';
  path: string;
  version?: string;
  error?: string;
}

export interface ComponentReadiness {
  name: string;
  /** HTTP status of /readyz/<name> (200 ready, 503 not ready, 404 not in this berthd). */
  code: number;
  body: string;
}

export interface BerthdFacts {
  /** berthd's http setting; '' when it is off. */
  address: string;
  /** Why berthd did not answer (not running, or not on this address). */
  unreachable?: string;
  components: ComponentReadiness[];
}

export interface KubeletFacts {
  path: string;
  cgroupDriver?: string;
  failSwapOn?: boolean;
  error?: string;
}

export interface DoctorFacts {
  config: LoadedConfig;
  modules: Record<KernelModule, ModuleState>;
  cgroup: { mode: 'v1' | 'v2' | 'hybrid'; controllers: string[] };
  /** Whether PID 1 is systemd (the systemd cgroup driver needs it). */
  systemdRunning: boolean;
  /** /proc/sys/user/max_user_namespaces; undefined when the file does not exist. */
  maxUserNamespaces?: number;
  /** Values of the sysctls doctor looks at; a key is absent when its file does not exist. */
  sysctls: Partial<Record<'net.ipv4.ip_forward' | 'net.bridge.bridge-nf-call-iptables', string>>;
  /** Active swap areas (/proc/swaps). */
  swaps: string[];
  /** /var/lib/kubelet/config.yaml, when it exists. */
  kubelet?: KubeletFacts;
  /** containerd as cri.containerd names it; undefined when cri is not enabled. */
  containerd?: ContainerdFacts;
  runtimes: RuntimeBinaryFacts[];
  /** CNI directories from the cri section (or the defaults when cri is off). */
  cni: CniFacts;
  ports: PortFacts[];
  disks: DiskFacts[];
  node: NodeRuntimeFacts[];
  /** Undefined when there is no valid config (nothing to ask berthd about). */
  berthd?: BerthdFacts;
}
