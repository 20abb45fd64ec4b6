import type { Logger } from 'pino';

// One of berth's node services (CRI runtime, CSI driver, GPU device plugin, overlay, CNI daemon)
// as something a process hosts: its own executable runs exactly one (lib/daemon.ts,
// serveComponent), berthd runs any set of them side by side (berthd/host.ts). A component owns
// its sockets and timers; it never touches the process (signals, exit, sd_notify), which is the
// host's.

export const componentNames = ['cri', 'csi', 'gpu', 'overlay', 'cnid'] as const;
export type ComponentName = (typeof componentNames)[number];

/** What the host hands a component. */
export interface ComponentContext {
  /** The component's logger: the process's logger with a `component` field. */
  log: Logger;
  /**
   * The component cannot go on (it lost what it serves, e.g. the overlay's lease store turned
   * it away): its own executable exits 1 for its service manager to restart it; berthd stops
   * and starts that component alone.
   */
  fatal(err: unknown): void;
}

export interface Component<Config = unknown> {
  /** Serve: resolves once every socket listens and the component is ready; rejects if it cannot. */
  start(): Promise<void>;
  /** Stop serving and release what start took. Safe after a failed or partial start, and twice. */
  stop(): Promise<void>;
  /**
   * Apply a new configuration without stopping (SIGHUP). Absent: berthd stops and starts the
   * component with the new configuration instead.
   */
  reload?(config: Config): Promise<void>;
  /** Prometheus text of the component's own numbers (berthd's one /metrics joins them). */
  metrics?(): string;
  /** Alive but broken, said why (overlay: the data plane has not been checked recently); undefined when healthy. */
  unhealthy?(): string | undefined;
  /** Ready once start resolved, unless the component says otherwise (e.g. GPU: registered with kubelet). */
  notReady?(): string | undefined;
}

/** Builds a component from its validated configuration; starts nothing. */
export type ComponentFactory<Config> = (config: Config, context: ComponentContext) => Component<Config>;
