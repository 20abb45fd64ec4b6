// berthd's one HTTP endpoint for every component: /metrics (the process's and each component's
// numbers), /healthz (alive, and no running component says it is broken) and /readyz (every
// component started and ready; /readyz/<component> for one).
import type { Server } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { listenHttp } from '../lib/http-endpoint.js';
import { counter, gauge, metricsContentType, metricsText } from '../lib/metrics.js';
import type { ComponentHost, ComponentStatus } from './host.js';

const loopDelay = monitorEventLoopDelay({ resolution: 20 });

function processMetrics(host: ComponentHost): string {
  const statuses = host.statuses();
  const per = (value: (s: ComponentStatus) => number) => statuses.map((s) => ({ labels: { component: s.name }, value: value(s) }));
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  return metricsText([
    gauge('berthd_component_up', '1 while the component is running.', per((s) => (s.state === 'running' ? 1 : 0))),
    gauge('berthd_component_ready', '1 while the component is running and ready.', per((s) => (s.notReady === undefined ? 1 : 0))),
    counter('berthd_component_restarts_total', 'Times the component was started again after it failed.', per((s) => s.restarts)),
    counter('berthd_component_start_failures_total', 'Starts of the component that failed.', per((s) => s.startFailures)),
    gauge('process_resident_memory_bytes', 'Resident set size of berthd.', memory.rss),
    gauge('nodejs_heap_used_bytes', 'V8 heap in use.', memory.heapUsed),
    counter('process_cpu_seconds_total', 'User and system CPU time of berthd.', (cpu.user + cpu.system) / 1e6),
    gauge('nodejs_eventloop_delay_p99_seconds', 'p99 of the event loop delay since the last scrape.', loopDelay.percentile(99) / 1e9),
  ]);
}

function describe(statuses: readonly ComponentStatus[], problem: (s: ComponentStatus) => string | undefined): { ok: boolean; text: string } {
  let ok = true;
  let text = '';
  for (const s of statuses) {
    const p = problem(s);
    if (p !== undefined) ok = false;
    text += `${s.name}: ${p === undefined ? 'ok' : p}\n`;
  }
  return { ok, text };
}

export function serveHttp(address: string, host: ComponentHost): Promise<Server> {
  loopDelay.enable();
  return listenHttp(address, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const reply = (code: number, text: string, type = 'text/plain') => void res.writeHead(code, { 'content-type': type }).end(text);
    if (path === '/metrics') {
      const text = processMetrics(host) + host.componentMetrics();
      loopDelay.reset();
      return reply(200, text, metricsContentType);
    }
    if (path === '/healthz') {
      const { ok, text } = describe(host.statuses(), (s) => (s.unhealthy === undefined ? undefined : `unhealthy: ${s.unhealthy}`));
      return reply(ok ? 200 : 503, text);
    }
    const ready = /^\/readyz(?:\/([a-z]+))?$/.exec(path);
    if (ready) {
      const statuses = host.statuses().filter((s) => ready[1] === undefined || s.name === ready[1]);
      if (statuses.length === 0) return reply(404, `no component ${ready[1]} in this berthd\n`);
      const { ok, text } = describe(statuses, (s) => (s.notReady === undefined ? undefined : `not ready: ${s.notReady}`));
      return reply(ok ? 200 : 503, text);
    }
    reply(404, 'not found: try /metrics, /healthz, /readyz or /readyz/<component>\n');
  });
}
