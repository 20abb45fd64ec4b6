import type { Server } from 'node:http';
import { listenHttp } from '../../lib/http-endpoint.js';
import { metricsContentType } from '../../lib/metrics.js';

// Standalone berth-cri's HTTP endpoint (--metrics-addr): /metrics and /healthz, as berth-gpu
// and berth-overlayd serve theirs. Under berthd the same text goes out on berthd's one endpoint.

/** Serve /metrics (the text `metrics` gives at each scrape) and /healthz on host:port. */
export function serveCriMetrics(address: string, metrics: () => string): Promise<Server> {
  return listenHttp(address, (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') res.writeHead(405, { allow: 'GET, HEAD' }).end();
    else if (path === '/metrics') res.writeHead(200, { 'content-type': metricsContentType }).end(metrics());
    else if (path === '/healthz') res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
  });
}
