import * as z from 'zod';
import { BerthError } from '../lib/errors.js';
import { describeZodError, settingName, unixAddress, durationMs } from '../lib/config-file.js';
import { maxMessageBytes } from '../lib/grpc/unix-socket.js';
import { defaultPullLimits } from './registry/manifest.js';
import { berthVersion } from '../lib/version.js';
import { pinnedPatternProblem } from './store/pinned-images.js';

export { loadConfigFile, unixPath } from '../lib/config-file.js';

// berth-cri's configuration: defaults, then the YAML file (--config), then command-line flags.
// Validation errors name the field as a dotted path, e.g. `runtimeHandlers.crun.binary`.

const runtimeHandler = z.strictObject({
  /** The OCI runtime binary the runc shim runs (runc or crun both speak runc's CLI). */
  binary: z.string().min(1),
  /** runc's --root for this handler (state of its containers); default per binary. */
  root: z.string().optional(),
  /** Use systemd cgroups in this handler (normally follows cgroupDriver). */
  systemdCgroup: z.boolean().optional(),
});

/** The longest delay a Node timer takes; a longer one fires at once. */
const maxTimerMs = 2 ** 31 - 1;

/**
 * berth's own sandbox image, the default: berth-cri makes it in containerd from its pause binary
 * (pod/local-pause.ts) under a name no registry serves, so it is never pulled.
 */
export const localPauseImage = `localhost/berth/pause:${berthVersion}`;

export const configSchema = z.strictObject({
  listen: unixAddress.default('unix:///run/berth/cri.sock'),
  containerd: z.string().min(1).default('/run/containerd/containerd.sock'),
  /** containerd's state directory (its `state` setting): where its shims' addresses are, for exec calls straight to them. */
  containerdState: z.string().min(1).default('/run/containerd'),
  namespace: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/).default('berth.io'),
  root: z.string().min(1).default('/var/lib/berth/cri'),
  state: z.string().min(1).default('/run/berth/cri'),
  registryConfigDir: z.string().default('/etc/berth/certs.d'),
  cniConfDir: z.string().min(1).default('/etc/cni/net.d'),
  /** Directories searched for CNI plugins, like CNI_PATH. */
  cniBinDir: z.array(z.string().min(1)).min(1).default(['/opt/cni/bin']),
  cniCacheDir: z.string().min(1).default('/var/lib/cni'),
  /** How often CNI GC releases what no known pod holds (also once at start); 0 turns it off. */
  cniGcInterval: z.literal(0).or(durationMs.pipe(z.number().min(1000, 'at least 1s').max(maxTimerMs, 'at most 24 days (a Node timer)'))).default(600_000),
  sandboxImage: z.string().min(1).default(localPauseImage),
  snapshotter: z.string().min(1).default('overlayfs'),
  defaultRuntimeHandler: z.string().min(1).default('runc'),
  runtimeHandlers: z.record(z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/), runtimeHandler).default({ runc: { binary: 'runc' } }),
  cgroupDriver: z.enum(['cgroupfs', 'systemd']).default('cgroupfs'),
  /** cgroup parent for pods that name none. */
  defaultCgroupParent: z.string().default('/berth.io'),
  streamAddress: z.string().default('127.0.0.1'),
  /** 0: a free port, chosen at start (the URLs carry it). */
  streamPort: z.coerce.number().int().min(0).max(65535).default(0),
  /** Serve the streaming URLs over HTTPS with this certificate and key (PEM files). */
  streamTlsCert: z.string().optional(),
  streamTlsKey: z.string().optional(),
  /** Longest CRI log record; longer lines are split into partial (P) records. */
  maxContainerLogLineSize: z.number().int().min(1024).default(16 * 1024),
  /**
   * Largest stdout/stderr kept for an ExecSync reply, per stream; the rest is read and dropped.
   * Both streams together are cut to fit one gRPC message (16 MiB, what kubelet accepts).
   */
  execSyncOutputLimit: z.number().int().min(1024).max(maxMessageBytes).default(16 * 1024 * 1024),
  /** Port-forward: how long a connect to a pod's port may take, in ms (a port that drops SYNs never answers). */
  portForwardConnectTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(5_000),
  /** Port-forward: ports one request may name (PortForward's port list, WebSocket ?port=); each is 2 channels of 256. */
  maxPortForwardPorts: z.coerce.number().int().min(1).max(128).default(32),
  /** Port-forward: connections open, opening or awaiting their second stream, at once on one session. */
  maxPortForwardStreams: z.coerce.number().int().min(1).max(65_536).default(128),
  // ---- streaming limits (README: Streaming limits); each a flag too ----
  /** Close an upgraded exec/attach/port-forward connection after this long without traffic (kubelet's streamingConnectionIdleTimeout). */
  streamIdleTimeout: durationMs.pipe(z.number().max(maxTimerMs, 'at most 24 days (a Node timer)')).default(4 * 3_600_000),
  /** SPDY streams one connection may have open at once (port-forward opens two per forwarded connection). */
  streamMaxConcurrentStreams: z.coerce.number().int().min(8).max(65536).default(256),
  /** Largest WebSocket message (after reassembly) a streaming client may send. */
  streamMaxMessageSize: z.coerce.number().int().min(64 * 1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
  /** How far an attached client may fall behind the container's output before it is disconnected. */
  streamAttachBufferSize: z.coerce.number().int().min(64 * 1024).max(256 * 1024 * 1024).default(4 * 1024 * 1024),
  /**
   * Images that keep a container rootfs prepared ahead, for the next CreateContainer on them
   * (pod/spare-rootfs.ts): the most recently used ones; 0 turns it off.
   */
  spareRootfsImages: z.coerce.number().int().min(0).max(64).default(4),
  /** A rootfs prepared ahead and not taken for this long is removed. */
  spareRootfsIdle: durationMs.pipe(z.number().min(1000, 'at least 1s').max(maxTimerMs, 'at most 24 days (a Node timer)')).default(300_000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  /** HOST:PORT of /metrics and /healthz ('' = off; port 0 picks a free one). Under berthd, berthd's endpoint serves the same. */
  metricsAddr: z.string().default(''),
  /** Pull concurrency per image (layers fetched in parallel). */
  maxConcurrentDownloads: z.number().int().min(1).max(32).default(3),
  /** Largest manifest or index a pull reads, in bytes (containerd's resolver: about 4 MiB). */
  maxManifestSize: z.coerce.number().int().min(4096).max(1 << 30).default(defaultPullLimits.maxManifestBytes),
  /** Largest image config a pull reads into memory, in bytes. */
  maxImageConfigSize: z.coerce.number().int().min(4096).max(1 << 30).default(defaultPullLimits.maxConfigBytes),
  /**
   * Images reported pinned (kubelet's GC keeps them), as CRI-O's pinned_images: exact names,
   * `prefix*` globs and `*keyword*` patterns (store/pinned-images.ts). The sandbox image always is.
   */
  pinnedImages: z.array(z.string()).default([]),
  /**
   * Cancel a pull whose registry bytes stop coming for this long (containerd's
   * image_pull_progress_timeout); 0 turns it off.
   */
  imagePullProgressTimeout: z
    .union([z.literal(0), z.literal('0').transform(() => 0), durationMs])
    .pipe(z.number().max(maxTimerMs, 'at most 24 days (a Node timer)').refine((ms) => ms === 0 || ms >= 100, 'at least 100ms (or 0: no timeout)'))
    .default(300_000),
});

export type CriConfig = z.infer<typeof configSchema>;

export function parseConfig(raw: unknown, source = 'config', section?: string): CriConfig {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new BerthError('invalid-config', describeZodError(result.error, source, section));
  const config = result.data;
  if (!config.runtimeHandlers[config.defaultRuntimeHandler]) {
    throw new BerthError('invalid-config', `${source}: ${settingName(section, 'defaultRuntimeHandler')}: "${config.defaultRuntimeHandler}" is not in runtimeHandlers (${Object.keys(config.runtimeHandlers).join(', ')})`);
  }
  config.pinnedImages.forEach((pattern, i) => {
    const problem = pinnedPatternProblem(pattern);
    if (problem) throw new BerthError('invalid-config', `${source}: ${settingName(section, `pinnedImages[${i}]`)}: ${problem}`);
  });
  return config;
}
