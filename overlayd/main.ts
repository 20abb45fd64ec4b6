// berth-overlayd: leases a pod subnet per node and programs the VXLAN overlay between nodes.
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { notifyReady } from '../lib/systemd.js';
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

async function main(): Promise<void> {
  const config = parseArgs(process.argv.slice(2));
  if (config === 'help') return void process.stdout.write(usage);
  if (config === 'version') return void process.stdout.write(`berth-overlayd ${berthVersion}\n`);
  const log = createLogger({ name: 'berth-overlayd', level: config.logLevel });
  const store = await openStore(config, log);
  const d = new Overlayd(config, store, log);
  let http: Server | undefined;
  if (config.healthzAddr) {
    // Served before start(): /readyz answers 503 while the lease is taken and the kernel programmed.
    http = await serveMetrics(config.healthzAddr, d);
    const bound = http.address();
    log.info({ address: config.healthzAddr, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /healthz, /readyz and /metrics');
  }
  let stopping: Promise<void> | undefined;
  const stop = (signal: string): void => {
    log.info({ signal }, 'stopping');
    stopping ??= (async () => {
      await d.stop();
      http?.close();
      process.exit(0);
    })();
  };
  d.onFatal = (err) => {
    log.fatal({ err: errorMessage(err) }, 'stopping');
    stopping ??= (async () => {
      await d.stop();
      http?.close();
      process.exit(1);
    })();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  try {
    await d.start();
  } catch (err) {
    await d.stop().catch(() => undefined);
    throw err;
  }
  log.info({ version: berthVersion, subnet: d.lease?.subnet, ipv6Subnet: d.lease?.ipv6Subnet, subnetFile: config.subnetFile }, 'berth-overlayd running');
  notifyReady();
}

main().catch((err: unknown) => {
  process.stderr.write(`berth-overlayd: ${errorMessage(err)}\n`);
  process.exit(1);
});
