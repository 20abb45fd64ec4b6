// berth-overlayd as a component: leases this node's pod subnet (file, etcd or Kubernetes API
// store) and programs the VXLAN overlay to the other nodes. What it programs lives in the
// kernel and its lease in the store, so a restart finds both again.
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Component, ComponentContext } from '../lib/component.js';
import { berthVersion } from '../lib/version.js';
import type { OverlaydConfig } from './config.js';
import { Overlayd } from './daemon.js';
import { FileLeaseStore } from './lease/file.js';
import type * as KubeModule from './lease/kube.js';
import { healthProblem, serveMetrics } from './metrics.js';
import { readNetworkConfigFile } from './network-config.js';
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

export function overlayComponent(config: OverlaydConfig, { log, fatal }: ComponentContext): Component<OverlaydConfig> {
  let overlay: Overlayd | undefined;
  let http: Server | undefined;
  let stopped = false;

  async function start(): Promise<void> {
    const store = await openStore(config, log);
    if (stopped) return void (await store.close?.());
    const d = new Overlayd(config, store, log);
    overlay = d;
    if (config.healthzAddr) {
      // Served before start(): /readyz answers 503 while the lease is taken and the kernel programmed.
      http = await serveMetrics(config.healthzAddr, d);
      const bound = http.address();
      log.info({ address: config.healthzAddr, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /healthz, /readyz and /metrics');
    }
    d.onFatal = fatal;
    // Waits as long as the store is out of reach; stop() ends the wait.
    await d.start();
    log.info({ version: berthVersion, subnet: d.lease?.subnet, ipv6Subnet: d.lease?.ipv6Subnet, subnetFile: config.subnetFile }, 'berth-overlayd running');
  }

  async function stop(): Promise<void> {
    stopped = true;
    await overlay?.stop();
    http?.close();
    overlay = http = undefined;
  }

  return {
    start,
    stop,
    metrics: () => (overlay ? overlay.metrics.text(overlay.peerCount, overlay.ready) : ''),
    unhealthy: () => (overlay ? healthProblem(overlay) : 'not started'),
    notReady: () => (overlay?.ready ? undefined : 'the data plane is not programmed yet'),
  };
}
