import type { Server } from 'node:http';
import { listenHttp } from '../lib/http-endpoint.js';
import { counter, gauge, metricsContentType, metricsText } from '../lib/metrics.js';
import type { PluginRunner } from './runner.js';

// /metrics (Prometheus text format) and /healthz for berth-gpu. Healthy means: serving the
// DevicePlugin socket and registered with kubelet.

export function gpuMetrics(runner: PluginRunner): string {
  const p = runner.plugin;
  const unhealthy = p?.tracker.unhealthy() ?? new Set<string>();
  const gpus = [...new Set(p?.devices.map((d) => d.gpu.uuid) ?? [])];
  const transitions = p?.tracker.transitions;
  return metricsText([
    gauge('berth_gpu_devices', 'GPUs advertised, by health.', [
      { labels: { health: 'healthy' }, value: gpus.filter((u) => !unhealthy.has(u)).length },
      { labels: { health: 'unhealthy' }, value: gpus.filter((u) => unhealthy.has(u)).length },
    ]),
    gauge('berth_gpu_advertised_devices', 'Device IDs advertised to kubelet (replicas count once each).', p?.devices.length ?? 0),
    counter('berth_gpu_health_transitions_total', 'Devices turning unhealthy or healthy again.', [
      { labels: { to: 'unhealthy' }, value: transitions?.toUnhealthy ?? 0 },
      { labels: { to: 'healthy' }, value: transitions?.toHealthy ?? 0 },
    ]),
    counter('berth_gpu_allocations_total', 'Containers allocated GPUs.', p?.counters.allocations ?? 0),
    counter('berth_gpu_allocation_errors_total', 'Allocate calls refused.', p?.counters.allocationErrors ?? 0),
    counter('berth_gpu_registrations_total', 'Successful registrations with kubelet.', runner.registrations),
  ]);
}

/** Serve /metrics and /healthz on host:port; resolves with the server once listening. */
export function serveMetrics(address: string, runner: PluginRunner): Promise<Server> {
  return listenHttp(address, (req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': metricsContentType }).end(gpuMetrics(runner));
    } else if (req.url === '/healthz') {
      const ok = runner.registered;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not registered with kubelet\n');
    } else {
      res.writeHead(404).end();
    }
  });
}
