import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type * as KubeClient from '@kubernetes/client-node';
import type { CoreV1Api, KubeConfig, V1Node } from '@kubernetes/client-node';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { tryParseCidr, subnetContains, subnetOf, type Family } from '../../lib/ip.js';
import { allAnnotationKeys, annotationPatch, decodeNode, leaseAnnotations, podCIDROf, type Decoded } from './kube-node.js';
import { leaseKey, type Lease, type LeaseAttrs, type LeaseEvent, type LeaseStore, type LeaseWatch, type NetworkConfig } from '../types.js';

// The kube lease store (flannel's --kube-subnet-mgr): the subnet is the one the controller-manager
// put in node.spec.podCIDRs, and the lease is published as annotations on our Node object so
// every other node's daemon sees it by watching /api/v1/nodes. The network config is not stored
// in the cluster; it comes from --network-config. @kubernetes/client-node is imported lazily:
// it costs start-up time the etcd and file stores should not pay.

export interface KubeLeaseStoreOptions {
  /** This node's Node name (--node-name or $NODE_NAME). */
  nodeName: string;
  /** Path of a kubeconfig; without it the in-cluster service account config is used. */
  kubeconfig?: string;
  /** The network config from --network-config (the cluster does not hold one). */
  networkConfig: NetworkConfig;
  log: Logger;
  /** How long acquire() waits for the node's podCIDR to be assigned (default 60 s). */
  podCIDRTimeoutMs?: number;
  /** How often acquire() rereads the node while waiting (default 1 s). */
  pollIntervalMs?: number;
  /** Consecutive failed watch attempts before onError (default 3). */
  maxWatchFailures?: number;
}

type ClientModule = typeof KubeClient;

interface Client {
  module: ClientModule;
  config: KubeConfig;
  core: CoreV1Api;
}

/** What the last list or watch event said about a node, to turn changes into delete/put. */
interface Seen {
  key: string;
  fingerprint: string;
}

/** The HTTP status of a failed API call (ApiException.code, or the watch's statusCode). */
function httpStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** A short error for a failed API call; ApiException's own message carries every header. */
function apiError(what: string, err: unknown): BerthError {
  const status = httpStatus(err);
  if (status === undefined) return new BerthError('not-available', `kube API: ${what}: ${errorMessage(err)}`, { cause: err });
  const body = (err as { body?: unknown }).body;
  let detail = '';
  try {
    const parsed = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: string } | undefined;
    if (parsed?.message) detail = `: ${parsed.message}`;
  } catch {
    // a body that is not a Status object adds nothing
  }
  return new BerthError(status === 404 ? 'not-found' : 'not-available', `kube API: ${what}: HTTP ${status}${detail}`, { cause: err });
}

export class KubeLeaseStore implements LeaseStore {
  readonly name = 'kube';
  private readonly options: KubeLeaseStoreOptions;
  private readonly log: Logger;
  private client?: Promise<Client>;
  private readonly stop = new AbortController();
  private readonly watches = new Set<LeaseWatch>();
  /** resourceVersion of the last list(): where watch() starts. */
  private listVersion?: string;
  /** Per node name, the lease the last list() found. */
  private listed = new Map<string, Seen>();

  constructor(options: KubeLeaseStoreOptions) {
    if (!options.nodeName) throw new BerthError('invalid-config', 'kube lease store: the node name is required (--node-name or $NODE_NAME)');
    this.options = options;
    this.log = options.log.child({ store: 'kube' });
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    return this.options.networkConfig;
  }

  private connect(): Promise<Client> {
    this.client ??= (async () => {
      const module = await import('@kubernetes/client-node');
      const config = new module.KubeConfig();
      const { kubeconfig } = this.options;
      if (kubeconfig) {
        try {
          config.loadFromFile(kubeconfig);
        } catch (err) {
          throw new BerthError('invalid-config', `kubeconfig ${kubeconfig}: ${errorMessage(err)}`, { cause: err });
        }
      } else if (process.env.KUBERNETES_SERVICE_HOST && process.env.KUBERNETES_SERVICE_PORT && existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token')) {
        config.loadFromCluster();
      } else {
        throw new BerthError('invalid-config', 'kube lease store: no kubeconfig given and not running in a pod (KUBERNETES_SERVICE_HOST unset or no service account token)');
      }
      if (!config.getCurrentCluster()) throw new BerthError('invalid-config', `kubeconfig ${kubeconfig ?? '(in-cluster)'}: no current cluster`);
      return { module, config, core: config.makeApiClient(module.CoreV1Api) };
    })();
    // a failed set-up is not cached, so a later call can succeed once the file is there
    this.client.catch(() => (this.client = undefined));
    return this.client;
  }

  private checkOpen(): void {
    if (this.stop.signal.aborted) throw new BerthError('failed-precondition', 'kube lease store is closed');
  }

  private async readNode(name: string): Promise<V1Node> {
    const { core } = await this.connect();
    try {
      return await core.readNode({ name });
    } catch (err) {
      const e = apiError(`read node ${name}`, err);
      throw e.kind === 'not-found' ? new BerthError('not-found', `node ${JSON.stringify(name)} does not exist in the cluster (is --node-name right?)`, { cause: err }) : e;
    }
  }

  private async patchAnnotations(patch: Record<string, string | null>): Promise<void> {
    const { core, module } = await this.connect();
    const name = this.options.nodeName;
    try {
      await core.patchNode({ name, body: { metadata: { annotations: patch } } }, module.setHeaderOptions('Content-Type', module.PatchStrategy.MergePatch));
    } catch (err) {
      throw apiError(`patch node ${name}`, err);
    }
  }

  async acquire(attrs: LeaseAttrs, config: NetworkConfig): Promise<Lease> {
    this.checkOpen();
    const { nodeName } = this.options;
    const timeoutMs = this.options.podCIDRTimeoutMs ?? 60_000;
    const pollMs = this.options.pollIntervalMs ?? 1000;
    const start = Date.now();
    let lastLog = 0; // the first wait is logged at once, then every 5 s
    let node = await this.readNode(nodeName);
    for (;;) {
      const missing = [config.enableIPv4 && !podCIDROf(node, 4) ? 'IPv4' : '', config.enableIPv6 && !podCIDROf(node, 6) ? 'IPv6' : ''].filter(Boolean).join(' and ');
      if (!missing) break;
      const waited = Date.now() - start;
      if (waited >= timeoutMs) {
        throw new BerthError('deadline-exceeded', `node ${JSON.stringify(nodeName)} has no ${missing} podCIDR after ${Math.round(waited / 1000)} s (does the controller-manager run with --allocate-node-cidrs?)`);
      }
      if (Date.now() - lastLog >= 5000) {
        lastLog = Date.now();
        this.log.info({ node: nodeName, waitedMs: waited }, `waiting for the ${missing} podCIDR of the node to be assigned`);
      }
      try {
        await sleep(Math.min(pollMs, timeoutMs - waited), undefined, { signal: this.stop.signal });
      } catch {
        throw new BerthError('aborted', `kube lease store closed while waiting for the podCIDR of node ${JSON.stringify(nodeName)}`);
      }
      node = await this.readNode(nodeName);
    }

    const lease: Lease = { attrs };
    if (config.enableIPv4) lease.subnet = this.checkInside(node, 4, config.network, 'Network');
    if (config.enableIPv6) lease.ipv6Subnet = this.checkInside(node, 6, config.ipv6Network, 'IPv6Network');

    const patch = annotationPatch(node.metadata?.annotations ?? {}, leaseAnnotations(attrs, config));
    if (patch) {
      await this.patchAnnotations(patch);
      this.log.info({ node: nodeName, subnet: lease.subnet, ipv6Subnet: lease.ipv6Subnet, changed: Object.keys(patch) }, 'published the lease as node annotations');
    } else {
      this.log.debug({ node: nodeName }, 'node annotations already carry this lease');
    }
    return lease;
  }

  /** The node's podCIDR of `family`, refused unless it lies inside the configured network. */
  private checkInside(node: V1Node, family: Family, network: string | undefined, field: string): string {
    const podCIDR = podCIDROf(node, family) as string;
    if (!network) return podCIDR;
    const net = tryParseCidr(network);
    const pod = tryParseCidr(podCIDR);
    if (!net || !pod || pod.prefixLength < net.prefixLength || !subnetContains(subnetOf(net), pod.address)) {
      throw new BerthError('invalid-config', `node ${JSON.stringify(this.options.nodeName)} has podCIDR ${podCIDR}, which is outside the ${field} ${network} of the network config`);
    }
    return podCIDR;
  }

  async list(): Promise<Lease[]> {
    this.checkOpen();
    const { core } = await this.connect();
    const config = this.options.networkConfig;
    const leases: Lease[] = [];
    const seen = new Map<string, Seen>();
    let version: string | undefined;
    let page: string | undefined;
    do {
      let result;
      try {
        result = await core.listNode({ limit: 500, _continue: page });
      } catch (err) {
        throw apiError('list nodes', err);
      }
      version ??= result.metadata?.resourceVersion;
      page = result.metadata?._continue || undefined;
      for (const node of result.items) {
        const name = node.metadata?.name ?? '';
        const decoded = decodeNode(node, config);
        if ('broken' in decoded) {
          this.log.warn({ node: name, reason: decoded.broken }, 'skipping a node whose berth annotations are broken');
        } else if ('lease' in decoded) {
          leases.push(decoded.lease);
          seen.set(name, { key: leaseKey(decoded.lease), fingerprint: JSON.stringify(decoded.lease) });
        }
      }
    } while (page);
    this.listVersion = version;
    this.listed = seen;
    return leases;
  }

  async watch(onEvent: (e: LeaseEvent) => void, onError: (err: Error) => void): Promise<LeaseWatch> {
    this.checkOpen();
    if (this.listVersion === undefined) await this.list();
    const client = await this.connect();
    const nodeWatch = new NodeWatch(client, this.options, this.log, this.listVersion as string, new Map(this.listed), onEvent, onError);
    const handle: LeaseWatch = {
      close: async () => {
        this.watches.delete(handle);
        await nodeWatch.close();
      },
    };
    this.watches.add(handle);
    nodeWatch.start();
    return handle;
  }

  async release(): Promise<void> {
    this.checkOpen();
    let node: V1Node;
    try {
      node = await this.readNode(this.options.nodeName);
    } catch (err) {
      if (err instanceof BerthError && err.kind === 'not-found') return;
      throw err;
    }
    const current = node.metadata?.annotations ?? {};
    const patch = annotationPatch(current, Object.fromEntries(allAnnotationKeys.map((k) => [k, null])));
    if (patch) await this.patchAnnotations(patch);
    this.log.info({ node: this.options.nodeName }, 'removed the lease annotations of the node');
  }

  async close(): Promise<void> {
    this.stop.abort();
    await Promise.all([...this.watches].map((w) => w.close()));
  }
}

/**
 * One logical watch of /api/v1/nodes, made of HTTP watches: the API server ends each after a
 * few minutes and the next starts at the last resourceVersion seen, so no event is lost.
 * 410 Gone (that version was compacted away) or repeated failures end it with onError.
 */
class NodeWatch {
  private closed = false;
  private failures = 0;
  private abort?: AbortController;
  private pending?: Promise<unknown>;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly client: Client,
    private readonly options: KubeLeaseStoreOptions,
    private readonly log: Logger,
    private version: string,
    private readonly seen: Map<string, Seen>,
    private readonly onEvent: (e: LeaseEvent) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  start(): void {
    if (this.closed) return;
    const startedAt = Date.now();
    let ended = false;
    let gotEvent = false;
    const watch = new this.client.module.Watch(this.client.config);
    const done = (err: unknown): void => {
      if (ended || this.closed) return;
      ended = true;
      this.abort?.abort();
      this.ended(err, Date.now() - startedAt, gotEvent);
    };
    const event = (phase: string, object: unknown): void => {
      if (ended || this.closed) return;
      gotEvent = true;
      this.failures = 0;
      if (phase === 'ERROR') {
        const status = object as { code?: number; message?: string };
        done(Object.assign(new Error(`watch error: ${status.message ?? 'unknown'}`), { statusCode: status.code }));
        return;
      }
      const version = (object as V1Node).metadata?.resourceVersion;
      if (version) this.version = version;
      if (phase !== 'BOOKMARK') this.nodeChanged(phase, object as V1Node);
    };
    const request = watch.watch('/api/v1/nodes', { resourceVersion: this.version, allowWatchBookmarks: true }, event, done).then(
      (abort) => {
        this.abort = abort;
        if (this.closed || ended) abort.abort();
      },
      (err: unknown) => done(err),
    );
    this.pending = request;
  }

  private ended(err: unknown, lastedMs: number, gotEvent: boolean): void {
    if (this.closed) return;
    const status = httpStatus(err);
    if (status === 410) {
      this.fail(new BerthError('aborted', `watch of nodes: resourceVersion ${this.version} is gone (410); relist`, { cause: err }));
      return;
    }
    let delayMs: number;
    if (err) {
      this.failures += 1;
      const max = this.options.maxWatchFailures ?? 3;
      this.log.warn({ err: errorMessage(err), failures: this.failures }, 'watch of nodes failed');
      if (this.failures >= max) {
        this.fail(new BerthError('not-available', `watch of nodes failed ${this.failures} times in a row: ${errorMessage(err)}`, { cause: err }));
        return;
      }
      delayMs = 500 * 2 ** (this.failures - 1);
    } else {
      // the server ended the watch (they do every few minutes); a quick empty one is not re-run at once
      this.log.debug({ resourceVersion: this.version, lastedMs }, 'watch of nodes ended by the server; resuming');
      delayMs = gotEvent || lastedMs >= 1000 ? 0 : 1000;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, delayMs);
  }

  private fail(err: Error): void {
    this.closed = true;
    this.onError(err);
  }

  private nodeChanged(phase: string, node: V1Node): void {
    const name = node.metadata?.name ?? '';
    const before = this.seen.get(name);
    let decoded: Decoded | undefined;
    if (phase === 'ADDED' || phase === 'MODIFIED') {
      decoded = decodeNode(node, this.options.networkConfig);
      if ('broken' in decoded) this.log.warn({ node: name, reason: decoded.broken }, 'ignoring a node whose berth annotations are broken');
    } else if (phase !== 'DELETED') {
      return;
    }
    const lease = decoded && 'lease' in decoded ? decoded.lease : undefined;
    if (!lease) {
      if (before) {
        this.seen.delete(name);
        this.emit({ type: 'delete', key: before.key });
      }
      return;
    }
    const now: Seen = { key: leaseKey(lease), fingerprint: JSON.stringify(lease) };
    // status heartbeats modify nodes all the time; only a changed lease is news
    if (before?.fingerprint === now.fingerprint) return;
    if (before && before.key !== now.key) this.emit({ type: 'delete', key: before.key });
    this.seen.set(name, now);
    this.emit({ type: 'put', lease });
  }

  private emit(e: LeaseEvent): void {
    try {
      this.onEvent(e);
    } catch (err) {
      // the client library would swallow this silently
      this.log.error({ err: errorMessage(err) }, 'lease event handler threw');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort?.abort();
    await this.pending;
  }
}
