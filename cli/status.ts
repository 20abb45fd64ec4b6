// `berth status`: what berth is doing on this node right now. Each enabled component's state
// from berthd (/readyz, and /metrics for up, restarts and GPUs), its sockets (do they answer:
// CRI Version, CSI GetPluginInfo, a connect for the others), versions, and counts: pods and
// running containers from the CRI (ListPodSandbox, ListContainers), volumes from berth-csi's own
// journal under csi.root (the driver's source of truth, read without writing), GPUs advertised
// from berth-gpu's metrics. Gathered into one plain object, then printed for a human or as JSON.
import { Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJournalRecords } from '../csi-driver/store/journal.js';
import type { VolumeRecord } from '../csi-driver/store/records.js';
import { errorMessage } from '../lib/errors.js';
import { berthVersion } from '../lib/version.js';
import { IdentityClient } from '../proto/gen/csi.js';
import { ContainerState, PodSandboxState, RuntimeServiceClient } from '../proto/gen/runtime/v1/api.js';
import { configPath, parseConfigArgs, httpGet, loadNodeConfig, metricValue, parseMetrics, probeContainerd, probeTimeoutMs, socketPathOf, socketState, type MetricSample, type SocketState } from './probes.js';

export const statusUsage = `Usage: berth status [--config FILE] [--json]

Shows each enabled component's state (from berthd's /readyz and /metrics), its sockets and
whether they answer, berth's and containerd's versions, pods and running containers (CRI),
volumes (berth-csi's journal under csi.root) and GPUs advertised (berth-gpu's metrics).

Options:
  --config FILE   berth's settings (default $BERTH_CONFIG or /etc/berth/berth.yaml)
  --json          one JSON document for scripts
  -h, --help

Exit status: 0 when berthd answers and every enabled component is running and ready, else 1.
`;

export interface SocketStatus {
  /** What the socket is for, e.g. "CRI", "CSI", "device plugin". */
  role: string;
  path: string;
  state: SocketState;
  /** What it answered (e.g. "berth-cri 0.1.0"), or why it did not. */
  answer?: string;
  error?: string;
}

export interface ComponentView {
  name: string;
  /** running and ready; running but not ready; down (berthd says so); unknown (berthd did not answer). */
  state: 'ready' | 'not ready' | 'down' | 'unknown';
  /** berthd's /readyz line for it, e.g. "not ready: containerd is not answering". */
  readiness?: string;
  restarts?: number;
  startFailures?: number;
  sockets: SocketStatus[];
}

export interface NodeStatus {
  berthVersion: string;
  config: { path: string; error?: string };
  berthd?: { address: string; running: boolean; error?: string; residentBytes?: number };
  containerd?: { socket: string; version?: string; error?: string };
  components: ComponentView[];
  pods?: { total: number; ready: number; containersRunning: number; error?: string };
  volumes?: { total: number; published: number; source: string; error?: string };
  gpus?: { advertised: number; healthy: number; unhealthy: number };
  overlay?: { subnet?: string; error?: string };
}

type Callback<T> = (err: ServiceError | null, res: T) => void;

/** One unary call with a deadline: `fn(metadata, options, callback)` issues it. */
function call<T>(fn: (md: Metadata, options: { deadline: number }, cb: Callback<T>) => unknown): Promise<T> {
  return new Promise((resolve, reject) => fn(new Metadata(), { deadline: Date.now() + probeTimeoutMs }, (err, res) => (err ? reject(new Error(err.details || err.message)) : resolve(res))));
}

async function criView(socket: SocketStatus, status: NodeStatus): Promise<void> {
  if (socket.state !== 'accepts') return;
  const client = new RuntimeServiceClient(`unix://${socket.path}`, credentials.createInsecure());
  try {
    const v = await call<{ runtimeName: string; runtimeVersion: string }>((md, o, cb) => client.version({ version: 'v1' }, md, o, cb));
    socket.answer = `${v.runtimeName} ${v.runtimeVersion}`;
    const [sandboxes, containers] = await Promise.all([
      call<{ items: { state: PodSandboxState }[] }>((md, o, cb) => client.listPodSandbox({ filter: undefined }, md, o, cb)),
      call<{ containers: { state: ContainerState }[] }>((md, o, cb) => client.listContainers({ filter: undefined }, md, o, cb)),
    ]);
    status.pods = {
      total: sandboxes.items.length,
      ready: sandboxes.items.filter((s) => s.state === PodSandboxState.SANDBOX_READY).length,
      containersRunning: containers.containers.filter((c) => c.state === ContainerState.CONTAINER_RUNNING).length,
    };
  } catch (err) {
    socket.error = errorMessage(err);
    status.pods = { total: 0, ready: 0, containersRunning: 0, error: socket.error };
  } finally {
    client.close();
  }
}

async function csiView(socket: SocketStatus): Promise<void> {
  if (socket.state !== 'accepts') return;
  const client = new IdentityClient(`unix://${socket.path}`, credentials.createInsecure());
  try {
    const info = await call<{ name: string; vendorVersion: string }>((md, o, cb) => client.getPluginInfo({}, md, o, cb));
    socket.answer = `${info.name} ${info.vendorVersion}`;
  } catch (err) {
    socket.error = errorMessage(err);
  } finally {
    client.close();
  }
}

function volumesFrom(root: string): NodeStatus['volumes'] {
  const source = join(root, 'state');
  try {
    const volumes = [...(readJournalRecords(source).get('volume')?.values() ?? [])] as VolumeRecord[];
    return { total: volumes.length, published: volumes.filter((v) => Object.keys(v.publications ?? {}).length > 0).length, source };
  } catch (err) {
    return { total: 0, published: 0, source, error: errorMessage(err) };
  }
}

async function sockets(list: { role: string; path: string }[]): Promise<SocketStatus[]> {
  return Promise.all(list.map(async (s) => ({ ...s, state: await socketState(s.path) })));
}

export async function gatherStatus(path: string): Promise<NodeStatus> {
  const loaded = loadNodeConfig(path);
  const status: NodeStatus = { berthVersion, config: { path, error: loaded.error }, components: [] };
  const config = loaded.config;
  if (!config) return status;

  let readyLines = new Map<string, string>();
  let samples: MetricSample[] = [];
  if (config.http) {
    status.berthd = { address: config.http, running: false };
    try {
      const [ready, metrics] = await Promise.all([httpGet(config.http, '/readyz'), httpGet(config.http, '/metrics')]);
      status.berthd.running = true;
      readyLines = new Map(ready.body.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
      samples = parseMetrics(metrics.body);
      status.berthd.residentBytes = metricValue(samples, 'process_resident_memory_bytes');
    } catch (err) {
      status.berthd.error = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
    }
  }

  const c = config.components;
  const work: Promise<void>[] = [];
  if (c.cri) work.push(probeContainerd(c.cri.containerd).then((d) => void (status.containerd = { socket: d.socket, version: d.version, error: d.version ? undefined : (d.error ?? `socket ${d.state}`) })));
  for (const name of Object.keys(c) as (keyof typeof c)[]) {
    const label = { component: name };
    const up = metricValue(samples, 'berthd_component_up', label);
    const line = readyLines.get(name);
    const view: ComponentView = {
      name,
      state: !status.berthd?.running ? 'unknown' : up === 0 || line === undefined ? 'down' : line === 'ok' ? 'ready' : 'not ready',
      readiness: line,
      restarts: metricValue(samples, 'berthd_component_restarts_total', label),
      startFailures: metricValue(samples, 'berthd_component_start_failures_total', label),
      sockets: [],
    };
    status.components.push(view);
    work.push(
      (async () => {
        if (name === 'cri' && c.cri) {
          view.sockets = await sockets([{ role: 'CRI', path: socketPathOf(c.cri.listen) }]);
          await criView(view.sockets[0]!, status);
        } else if (name === 'csi' && c.csi) {
          view.sockets = await sockets([{ role: 'CSI', path: socketPathOf(c.csi.endpoint) }]);
          await csiView(view.sockets[0]!);
          status.volumes = volumesFrom(c.csi.root);
        } else if (name === 'gpu' && c.gpu) {
          view.sockets = await sockets([{ role: 'device plugin', path: join(c.gpu.kubeletDir, c.gpu.socketName) }]);
          if (status.berthd?.running) {
            const healthy = metricValue(samples, 'berth_gpu_devices', { health: 'healthy' }) ?? 0;
            const unhealthy = metricValue(samples, 'berth_gpu_devices', { health: 'unhealthy' }) ?? 0;
            status.gpus = { advertised: metricValue(samples, 'berth_gpu_advertised_devices') ?? 0, healthy, unhealthy };
          }
        } else if (name === 'overlay' && c.overlay) {
          try {
            status.overlay = { subnet: /^BERTH_SUBNET=(.*)$/m.exec(readFileSync(c.overlay.subnetFile, 'utf8'))?.[1] };
          } catch (err) {
            status.overlay = { error: `${c.overlay.subnetFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}` };
          }
        } else if (name === 'cnid' && c.cnid) {
          view.sockets = await sockets([{ role: 'CNI', path: c.cnid.socket }]);
        }
      })(),
    );
  }
  await Promise.all(work);
  return status;
}

/** Healthy: berthd answers, every enabled component is ready and every socket accepts. */
export function statusHealthy(s: NodeStatus): boolean {
  return !s.config.error && s.berthd?.running === true && s.components.every((c) => c.state === 'ready' && c.sockets.every((k) => k.state === 'accepts' && !k.error));
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 ** 2)} MiB`;
}

export function formatStatus(s: NodeStatus): string {
  const lines: string[] = [`berth ${s.berthVersion}   config ${s.config.path}`];
  if (s.config.error) return `${lines[0]}\nconfig: ${s.config.error}\n`;
  if (!s.berthd) lines.push('berthd: http is off in the configuration; component states unknown');
  else if (s.berthd.running) lines.push(`berthd: running on ${s.berthd.address}${s.berthd.residentBytes ? `, ${mib(s.berthd.residentBytes)} resident` : ''}`);
  else lines.push(`berthd: not running (nothing answers on ${s.berthd.address}: ${s.berthd.error}); start it: systemctl start berthd`);
  if (s.containerd) lines.push(`containerd: ${s.containerd.version ?? `not answering (${s.containerd.error})`} at ${s.containerd.socket}`);
  lines.push('');
  const rows = s.components.map((c) => [
    c.name,
    c.state,
    c.restarts === undefined ? '-' : String(c.restarts),
    c.sockets.map((k) => `${k.path} ${k.state === 'accepts' ? (k.error ? `(error: ${k.error})` : k.answer ? `(${k.answer})` : '(answers)') : `(${k.state})`}`).join(', ') || '-',
  ]);
  const header = ['COMPONENT', 'STATE', 'RESTARTS', 'SOCKETS'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) lines.push(r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
  for (const c of s.components) if (c.state === 'not ready' && c.readiness) lines.push(`  ${c.name}: ${c.readiness}`);
  lines.push('');
  if (s.pods) lines.push(s.pods.error ? `pods: unknown (${s.pods.error})` : `pods: ${s.pods.total} (${s.pods.ready} ready), containers running: ${s.pods.containersRunning}`);
  if (s.volumes) lines.push(s.volumes.error ? `volumes: unknown (${s.volumes.error})` : `volumes: ${s.volumes.total} (${s.volumes.published} published), from ${s.volumes.source}`);
  if (s.gpus) lines.push(`gpus: ${s.gpus.advertised} advertised (${s.gpus.healthy} healthy, ${s.gpus.unhealthy} unhealthy)`);
  if (s.overlay) lines.push(s.overlay.error ? `overlay: no subnet yet (${s.overlay.error})` : `overlay: subnet ${s.overlay.subnet ?? '(IPv6 only)'}`);
  return `${lines.join('\n').trimEnd()}\n`;
}

export async function runStatusCommand(args: string[]): Promise<number> {
  const parsed = parseConfigArgs('status', statusUsage, args);
  if (typeof parsed === 'number') return parsed;
  const { config, json } = parsed;
  const status = await gatherStatus(configPath(config));
  process.stdout.write(json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  return statusHealthy(status) ? 0 : 1;
}
