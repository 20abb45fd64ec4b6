import type { Server } from 'node:http';
import { listenHttp } from '../lib/http-endpoint.js';
import type { PluginRunner } from './runner.js';

// /metrics (Prometheus text format) and /healthz for berth-gpu. Healthy means: serving the
// DevicePlugin socket and registered with kubelet.

function metricsText(runner: PluginRunner): string {
  const p = runner.plugin;
  const unhealthy = p?.tracker.unhealthy() ?? new Set<string>();
  const gpus = new Set(p?.devices.map((d) => d.gpu.uuid) ?? []);
  const lines = [
    '# HELP berth_gpu_devices GPUs advertised, by health.',
    '# TYPE berth_gpu_devices gauge',
    `berth_gpu_devices{health="healthy"} ${[...gpus].filter((u) => !unhealthy.has(u)).length}`,
    `berth_gpu_devices{health="unhealthy"} ${[...gpus].filter((u) => unhealthy.has(u)).length}`,
    '# HELP berth_gpu_advertised_devices Device IDs advertised to kubelet (replicas count once each).',
    '# TYPE berth_gpu_advertised_devices gauge',
    `berth_gpu_advertised_devices ${p?.devices.length ?? 0}`,
    '# HELP berth_gpu_health_transitions_total Devices turning unhealthy or healthy again.',
    '# TYPE berth_gpu_health_transitions_total counter',
    `berth_gpu_health_transitions_total{to="unhealthy"} ${p?.tracker.transitions.toUnhealthy ?? 0}`,
    `berth_gpu_health_transitions_total{to="healthy"} ${p?.tracker.transitions.toHealthy ?? 0}`,
    '# HELP berth_gpu_allocations_total Containers allocated GPUs.',
    '# TYPE berth_gpu_allocations_total counter',
    `berth_gpu_allocations_total ${p?.counters.allocations ?? 0}`,
    '# HELP berth_gpu_allocation_errors_total Allocate calls refused.',
    '# TYPE berth_gpu_allocation_errors_total counter',
    `berth_gpu_allocation_errors_total ${p?.counters.allocationErrors ?? 0}`,
    '# HELP berth_gpu_registrations_total Successful registrations with kubelet.',
    '# TYPE berth_gpu_registrations_total counter',
    `berth_gpu_registrations_total ${runner.registrations}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Serve /metrics and /healthz on host:port; resolves with the server once listening. */
export function serveMetrics(address: string, runner: PluginRunner): Promise<Server> {
  return listenHttp(address, (req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metricsText(runner));
    } else if (req.url === '/healthz') {
      const ok = runner.registered;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not registered with kubelet\n');
    } else {
      res.writeHead(404).end();
    }
  });
}
