import type { Server } from 'node:http';
import { listenHttp } from '../lib/http-endpoint.js';
import { counter, gauge, histogram, Histogram, metricsContentType, metricsText } from '../lib/metrics.js';
import type { Overlayd } from './daemon.js';
import { leaseRejectReasons, type LeaseRejectReason } from './peer-lease.js';

// berth-overlayd's numbers, and its HTTP endpoint: /healthz, /readyz and /metrics.

/** Buckets (seconds) of the lease-event-to-programmed histogram. */
const latencyBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 5];

export class OverlayMetrics {
  leasesSeen = 0;
  events = { put: 0, delete: 0 };
  resyncs = 0;
  resyncRepairs = 0;
  relists = 0;
  programmingErrors = 0;
  /** Peer lease revisions refused (overlayd/peer-lease.ts), by reason; every reason from 0. */
  readonly leasesRejected = Object.fromEntries(leaseRejectReasons.map((r) => [r, 0])) as Record<LeaseRejectReason, number>;
  readonly latency = new Histogram(latencyBuckets);

  text(peers: number, ready: boolean): string {
    return metricsText([
      gauge('berth_overlay_ready', '1 once the data plane is programmed and subnet.env is written.', ready ? 1 : 0),
      gauge('berth_overlay_leases', 'Leases of other nodes currently programmed.', peers),
      counter('berth_overlay_leases_seen_total', 'Lease events received (puts and deletes).', [
        { labels: { event: 'put' }, value: this.events.put },
        { labels: { event: 'delete' }, value: this.events.delete },
      ]),
      counter(
        'berth_overlay_leases_rejected_total',
        'Peer lease revisions ignored as invalid (subnet outside the network, wrong length, overlapping, bad PublicIP...), by reason.',
        leaseRejectReasons.map((reason) => ({ labels: { reason }, value: this.leasesRejected[reason] })),
      ),
      histogram('berth_overlay_programming_seconds', 'Time from a lease event arriving to its entries being programmed.', this.latency),
      counter('berth_overlay_resyncs_total', 'Full comparisons of the data plane with the leases.', this.resyncs),
      counter('berth_overlay_resync_repairs_total', 'Routes, neighbours, FDB entries or masquerade rules a resync had to fix.', this.resyncRepairs),
      counter('berth_overlay_relists_total', 'Times the lease watch broke and the leases were listed again.', this.relists),
      counter('berth_overlay_programming_errors_total', 'Lease events or resyncs that failed to program the kernel.', this.programmingErrors),
    ]);
  }
}

/** Why the overlay is not healthy (the last resync is too old), or undefined. */
export function healthProblem(d: Overlayd): string | undefined {
  const stale = Date.now() - d.lastGood > Math.max(3 * d.config.resyncInterval, 30_000);
  return stale ? 'the data plane has not been checked recently' : undefined;
}

/** /healthz (alive: the last resync is recent), /readyz (programmed and subnet.env written), /metrics. */
export function serveMetrics(address: string, d: Overlayd): Promise<Server> {
  return listenHttp(address, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': metricsContentType });
      return void res.end(d.metrics.text(d.peerCount, d.ready));
    }
    if (path === '/healthz') {
      const problem = healthProblem(d);
      res.writeHead(problem ? 503 : 200, { 'content-type': 'text/plain' });
      return void res.end(problem ? `${problem}\n` : 'ok\n');
    }
    if (path === '/readyz') {
      res.writeHead(d.ready ? 200 : 503, { 'content-type': 'text/plain' });
      return void res.end(d.ready ? 'ok\n' : 'not ready: the data plane is not programmed yet\n');
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: try /healthz, /readyz or /metrics\n');
  });
}
