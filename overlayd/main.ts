// berth-overlayd: leases a pod subnet per node and programs the VXLAN overlay between nodes.
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { runDaemon, type Daemon } from '../lib/daemon.js';
import { errorMessage } from '../lib/errors.js';
import { berthVersion } from '../lib/version.js';
import { parseArgs, usage, type OverlaydConfig } from './config.js';
import { Overlayd } from './daemon.js';
import { FileLeaseStore } from './lease/file.js';
import { serveMetrics } from './metrics.js';
import { readNetworkConfigFile } from './network-config.js';
import type * as KubeModule from './lease/kube.js';
import type { LeaseStore, NetworkConfig } from './types.js';

declare const BERTH_BUNDLED: boolean | undefined;

/**
 * The kube store, loaded only when chosen: @kubernetes/client-node is most of a 17 MB bundle
 * and ~40 MB of memory, so the build makes it a bundle of its own (dist/lib/overlayd-kube.cjs),
 * and the import below is kept out of this bundle by not being a literal.
 */
async function loadKubeStore(): Promise<typeof KubeModule> {
  if (typeof BERTH_BUNDLED !== 'undefined' && BERTH_BUNDLED) {
    return createRequire(import.meta.url)(join(dirname(fileURLToPath(import.meta.url)), '../lib/overlayd-kube.cjs')) as typeof KubeModule;
  }
  const source = './lease/kube.js';
  return (await import(source)) as typeof KubeModule;
}

async function openStore(c: OverlaydConfig, log: Logger): Promise<LeaseStore> {
  const networkConfig = (): NetworkConfig => readNetworkConfigFile(c.networkConfig!);
  if (c.leaseStore === 'file') return new FileLeaseStore({ networkConfigFile: c.networkConfig!, leaseFile: c.leaseFile });
  if (c.leaseStore === 'kube') {
    const { KubeLeaseStore } = await loadKubeStore();
    return new KubeLeaseStore({ nodeName: c.nodeName!, kubeconfig: c.kubeconfig, networkConfig: networkConfig(), log });
  }
  const { EtcdLeaseStore } = await import('./lease/etcd.js');
  return new EtcdLeaseStore({
    endpoints: c.etcdEndpoints,
    prefix: c.etcdPrefix,
    tls: c.etcdCaFile || c.etcdCertFile ? { caFile: c.etcdCaFile, certFile: c.etcdCertFile, keyFile: c.etcdKeyFile } : undefined,
    ttlSeconds: Math.max(1, Math.round(c.leaseTtl / 1000)),
    seedConfig: c.networkConfig ? networkConfig() : undefined,
    log,
  });
}

async function serve(config: OverlaydConfig, daemon: Daemon): Promise<void> {
  const log = daemon.logger(config.logLevel);
  const store = await openStore(config, log);
  const d = new Overlayd(config, store, log);
  let http: Server | undefined;
  if (config.healthzAddr) {
    // Served before start(): /readyz answers 503 while the lease is taken and the kernel programmed.
    http = await serveMetrics(config.healthzAddr, d);
    const bound = http.address();
    log.info({ address: config.healthzAddr, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /healthz, /readyz and /metrics');
  }
  // Stoppable before start(), which waits as long as the store is out of reach; a start that
  // throws is stopped the same way before the daemon exits 1.
  daemon.onStop(async () => {
    await d.stop();
    http?.close();
  });
  d.onFatal = (err) => {
    log.fatal({ err: errorMessage(err) }, 'stopping');
    void daemon.stop(1);
  };
  await d.start();
  log.info({ version: berthVersion, subnet: d.lease?.subnet, ipv6Subnet: d.lease?.ipv6Subnet, subnetFile: config.subnetFile }, 'berth-overlayd running');
  daemon.ready();
}

runDaemon({ name: 'berth-overlayd', usage, parseArgs, serve });
