import { readFileSync } from 'node:fs';
import type { Etcd3, ICompare, IKeyValue, IOptions, IRequestOp, IWatchResponse } from 'etcd3';
import type { Logger } from 'pino';
import { guardEtcdWatches } from './etcd-watch-guard.js';
import { canonicalCidr, formatLeaseValue, parseLeaseValue, prefixRange, publicIPOf, subnetsOfKey, type Subnets } from './etcd-codec.js';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { candidateSubnets, formatNetworkConfig, isLeasableSubnet, parseNetworkConfig } from '../network-config.js';
import { leaseKey, type Lease, type LeaseAttrs, type LeaseEvent, type LeaseStore, type LeaseWatch, type NetworkConfig } from '../types.js';

// Subnet leases in etcd, laid out as flannel does: <prefix>/config holds the network config,
// <prefix>/subnets/<ip>-<len> one node's lease, bound to an etcd lease that this store keeps
// alive. A key without an etcd lease is an operator's reservation. Every write is a
// transaction that compares revisions, so two nodes never end up with the same subnet.

export interface EtcdLeaseStoreOptions {
  endpoints: string[];
  /** Key prefix (flannel's is /coreos.com/network). */
  prefix?: string;
  tls?: { certFile?: string; keyFile?: string; caFile?: string };
  /** Lifetime of a lease that is not renewed (flannel: 24 h). */
  ttlSeconds?: number;
  /** Written to <prefix>/config when that key is absent. */
  seedConfig?: NetworkConfig;
  log: Logger;
}

type Held = { key: string; etcdLease: string; lease: Lease };
type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

const callTimeoutMs = 10_000;
const noLease = '0';

/** Capped exponential delays for the watch stream's reconnects (etcd3's default grows to 30 s). */
function watchBackoff(ms = 100): WatchBackoff {
  return { duration: ms, next: () => watchBackoff(Math.min(ms * 2, 2000)) };
}

/** Whether the subnets have exactly the families the config enables. */
function fitsFamilies(s: Subnets, c: NetworkConfig): boolean {
  return c.enableIPv4 === (s.subnet !== undefined) && c.enableIPv6 === (s.ipv6Subnet !== undefined);
}

function leasable(s: Subnets, c: NetworkConfig): boolean {
  return fitsFamilies(s, c) && (!s.subnet || isLeasableSubnet(c, s.subnet)) && (!s.ipv6Subnet || isLeasableSubnet(c, s.ipv6Subnet));
}

export class EtcdLeaseStore implements LeaseStore {
  onSubnetChange?: (lease: Lease) => void;
  readonly name = 'etcd';
  private readonly prefix: string;
  private readonly subnetsPrefix: string;
  private readonly ttlSeconds: number;
  private readonly log: Logger;
  private etcd: Promise<Etcd3> | undefined;
  private closed = false;
  private held: Held | undefined;
  private wanted: { attrs: LeaseAttrs; config: NetworkConfig } | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewFailures = 0;
  private listRevision = 0;
  private readonly watches = new Set<LeaseWatch>();

  constructor(private readonly options: EtcdLeaseStoreOptions) {
    if (options.endpoints.length === 0) throw new BerthError('invalid-config', 'etcd endpoints: at least one is needed');
    this.prefix = (options.prefix ?? '/berth.io/network').replace(/\/+$/, '');
    this.subnetsPrefix = `${this.prefix}/subnets/`;
    this.ttlSeconds = options.ttlSeconds ?? 24 * 3600;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 2) throw new BerthError('invalid-config', `etcd lease TTL: ${this.ttlSeconds} must be a whole number of seconds, at least 2`);
    this.log = options.log;
  }

  /** The etcd client, created on first use so the etcd3 module loads only for this store. */
  private client(): Promise<Etcd3> {
    if (this.closed) return Promise.reject(new BerthError('failed-precondition', 'etcd lease store is closed'));
    this.etcd ??= (async () => {
      const { Etcd3 } = await import('etcd3');
      await guardEtcdWatches(this.options.log);
      const tls = this.options.tls;
      const read = (file: string | undefined) => (file ? readFileSync(file) : undefined);
      // A restarted etcd should be used at once: no circuit breaker holding the host off for 5 s.
      const passThrough = { execute: (fn: (ctx: { signal: AbortSignal }) => unknown) => Promise.resolve().then(() => fn({ signal: new AbortController().signal })) } as unknown as HostPolicy;
      return new Etcd3({
        hosts: this.options.endpoints,
        // createSsl takes null for "the system's roots"; etcd3's type wants a Buffer.
        ...(tls || this.options.endpoints.some((e) => e.startsWith('https:')) ? { credentials: { rootCertificate: read(tls?.caFile) as Buffer, privateKey: read(tls?.keyFile), certChain: read(tls?.certFile) } } : {}),
        faultHandling: { host: () => passThrough, watchBackoff: watchBackoff() },
      });
    })();
    return this.etcd;
  }

  /** Run an etcd call, turning a failure into an error that names the endpoints. */
  private async call<T>(what: string, fn: (etcd: Etcd3) => Promise<T>): Promise<T> {
    const etcd = await this.client();
    try {
      return await fn(etcd);
    } catch (err) {
      if (err instanceof BerthError) throw err;
      throw new BerthError('not-available', `etcd ${this.options.endpoints.join(',')}: ${what}: ${errorMessage(err)}`, { cause: err });
    }
  }

  private get deadline(): { deadline: number } {
    return { deadline: Date.now() + callTimeoutMs };
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    const key = `${this.prefix}/config`;
    const source = `etcd key ${key}`;
    const found = await this.call(`read ${key}`, (e) => e.kv.range({ key: Buffer.from(key) }, this.deadline));
    const kv = found.kvs[0];
    if (kv) return parseNetworkConfig(kv.value.toString(), source);
    const seed = this.options.seedConfig;
    if (!seed) {
      throw new BerthError('not-found', `${source} is absent: put the cluster network config there (etcdctl put ${key} '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}') or pass --network-config`);
    }
    const text = formatNetworkConfig(seed);
    const res = await this.call(`seed ${key}`, (e) =>
      e.kv.txn({ compare: [{ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: 0 }], success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(text) } }] }, this.deadline),
    );
    if (res.succeeded) {
      this.log.info({ key }, 'seeded the network config in etcd');
      return parseNetworkConfig(text, source);
    }
    return this.getNetworkConfig(); // another node seeded it first: theirs counts
  }

  async acquire(attrs: LeaseAttrs, config: NetworkConfig, previous?: Subnets): Promise<Lease> {
    this.stopRenewal();
    this.wanted = { attrs, config };
    const held = await this.take(attrs, config, previous);
    this.held = held;
    this.renewFailures = 0;
    this.scheduleRenewal(held.etcdLease === noLease ? undefined : (this.ttlSeconds * 1000) / 3);
    return held.lease;
  }

  /** One acquisition: own key or reservation, else `previous`, else the first free subnet. */
  private async take(attrs: LeaseAttrs, config: NetworkConfig, previous: Subnets | undefined): Promise<Held> {
    const value = Buffer.from(formatLeaseValue(attrs));
    let granted: string | undefined; // one etcd lease, reused across conflicting attempts
    const grant = async (): Promise<string> => (granted ??= (await this.call('grant a lease', (e) => e.leaseClient.leaseGrant({ TTL: this.ttlSeconds }, this.deadline))).ID);
    const txn = (compare: ICompare[], put: IRequestOp) => this.call('write a lease', (e) => e.kv.txn({ compare, success: [put] }, this.deadline)).then((r) => r.succeeded);
    const done = (key: string, subnets: Subnets, etcdLease: string): Held => {
      if (granted && granted !== etcdLease) void this.revoke(granted);
      const expiration = etcdLease === noLease ? undefined : new Date(Date.now() + this.ttlSeconds * 1000);
      return { key, etcdLease, lease: { ...subnets, attrs, ...(expiration ? { expiration } : {}) } };
    };
    for (let attempt = 0; attempt < 50; attempt++) {
      const { kvs, revision } = await this.rangeSubnets();
      const entries = kvs.flatMap((kv) => {
        const key = kv.key.toString().slice(this.subnetsPrefix.length);
        const subnets = subnetsOfKey(key);
        return subnets ? [{ kv, key, subnets, publicIP: publicIPOf(kv.value.toString()) }] : [];
      });
      // (1) A key with our public IP: our lease from before a restart, or a reservation (preferred).
      const ours = entries
        .filter((e) => e.publicIP === attrs.publicIP && (e.kv.lease === noLease ? fitsFamilies(e.subnets, config) : leasable(e.subnets, config)))
        .sort((a, b) => Number(a.kv.lease !== noLease) - Number(b.kv.lease !== noLease))[0];
      if (ours) {
        const etcdLease = ours.kv.lease === noLease ? noLease : await grant();
        const put = { request_put: { key: ours.kv.key, value, lease: etcdLease } };
        if (await txn([{ key: ours.kv.key, target: 'Mod', result: 'Equal', mod_revision: ours.kv.mod_revision }], put)) {
          if (ours.kv.lease !== noLease && ours.kv.lease !== etcdLease) void this.revoke(ours.kv.lease); // the old process's lease, now empty
          this.log.info({ key: ours.key, reservation: etcdLease === noLease }, 'took back the lease of this public IP');
          return done(ours.key, ours.subnets, etcdLease);
        }
        continue;
      }
      const used4 = new Set(entries.map((e) => e.subnets.subnet));
      const used6 = new Set(entries.map((e) => e.subnets.ipv6Subnet));
      const free = (s: Subnets) => (!s.subnet || !used4.has(s.subnet)) && (!s.ipv6Subnet || !used6.has(s.ipv6Subnet));
      // (2) The subnet of the subnet file, (3) else the first free one of each family.
      const prev = previous && { subnet: canonicalCidr(previous.subnet), ipv6Subnet: canonicalCidr(previous.ipv6Subnet) };
      let chosen: Subnets | undefined = prev && leasable(prev, config) && free(prev) ? prev : undefined;
      if (!chosen) {
        chosen = {};
        for (const [family, field, used, network] of [[4, 'subnet', used4, config.network], [6, 'ipv6Subnet', used6, config.ipv6Network]] as const) {
          if (!(family === 4 ? config.enableIPv4 : config.enableIPv6)) continue;
          let pick: string | undefined;
          for (const s of candidateSubnets(config, family)) {
            if (!used.has(s)) {
              pick = s;
              break;
            }
          }
          if (!pick) throw new BerthError('resource-exhausted', `no free /${family === 4 ? config.subnetLen : config.ipv6SubnetLen} subnet left in ${network} (${entries.length} leases and reservations)`);
          chosen[field] = pick;
        }
      }
      const key = leaseKey(chosen);
      const full = Buffer.from(this.subnetsPrefix + key);
      const compare: ICompare[] = [{ key: full, target: 'Create', result: 'Equal', create_revision: 0 }];
      // Dual-stack keys can collide on one family only: then insist nothing changed since the read.
      if (chosen.subnet && chosen.ipv6Subnet) compare.push({ ...prefixRange(this.subnetsPrefix), target: 'Mod', result: 'Less', mod_revision: revision + 1 });
      const etcdLease = await grant();
      if (await txn(compare, { request_put: { key: full, value, lease: etcdLease } })) {
        this.log.info({ key, previous: chosen === prev }, 'leased a subnet');
        return done(key, chosen, etcdLease);
      }
      this.log.debug({ key }, 'subnet taken by another node meanwhile; trying again');
    }
    if (granted) void this.revoke(granted);
    throw new BerthError('try-again', 'could not lease a subnet: 50 attempts conflicted with other nodes');
  }

  private async rangeSubnets(): Promise<{ kvs: IKeyValue[]; revision: number }> {
    const res = await this.call(`list ${this.subnetsPrefix}`, (e) => e.kv.range(prefixRange(this.subnetsPrefix), this.deadline));
    return { kvs: res.kvs, revision: Number(res.header.revision) };
  }

  private async revoke(etcdLease: string): Promise<void> {
    try {
      await this.call('revoke a lease', (e) => e.leaseClient.leaseRevoke({ ID: etcdLease }, this.deadline));
    } catch (err) {
      this.log.debug({ err: errorMessage(err), etcdLease }, 'could not revoke an etcd lease (it expires on its own)');
    }
  }

  // Renewal: one keepalive every ttl/3. A failed one (etcd away) is retried with backoff; a lease
  // etcd no longer knows (expired while we were cut off, or revoked) is taken again, the same
  // subnet when it is still free. Nothing here throws out of the timer.

  private scheduleRenewal(ms: number | undefined): void {
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    if (ms === undefined || this.closed) return;
    this.renewTimer = setTimeout(() => void this.renew(), ms);
    this.renewTimer.unref();
  }

  private stopRenewal(): void {
    this.scheduleRenewal(undefined);
  }

  private async renew(): Promise<void> {
    const held = this.held;
    if (!held || !this.wanted || this.closed) return;
    const ttlMs = this.ttlSeconds * 1000;
    try {
      const ttl = await this.keepAliveOnce(held.etcdLease);
      if (this.held !== held || this.closed) return;
      if (ttl > 0) {
        if (this.renewFailures > 0) this.log.info({ key: held.key }, 'lease renewed again');
        this.renewFailures = 0;
        held.lease.expiration = new Date(Date.now() + ttl * 1000);
        this.scheduleRenewal(ttlMs / 3);
        return;
      }
      this.log.warn({ key: held.key }, 'etcd lease expired or was revoked: taking the subnet again');
      const again = await this.take(this.wanted.attrs, this.wanted.config, held.lease);
      if (this.held !== held || this.closed) {
        if (again.etcdLease !== noLease) void this.revoke(again.etcdLease);
        return;
      }
      this.held = again;
      if (again.key === held.key) this.log.info({ key: again.key }, 'lease taken again with the same subnet');
      else {
        this.log.error({ was: held.key, now: again.key }, 'lease lost and its subnet taken by another node: this node now has a different subnet');
        this.onSubnetChange?.(again.lease);
      }
      this.renewFailures = 0;
      this.scheduleRenewal(again.etcdLease === noLease ? undefined : ttlMs / 3);
    } catch (err) {
      if (this.held !== held || this.closed) return;
      this.renewFailures++;
      const retryMs = Math.min(500 * 2 ** (this.renewFailures - 1), 10_000, ttlMs / 3);
      this.log.warn({ err: errorMessage(err), key: held.key, retryMs, failures: this.renewFailures }, 'could not renew the lease in etcd; retrying');
      this.scheduleRenewal(retryMs);
    }
  }

  /** One keepalive round trip; the lease's remaining TTL (0 = etcd does not know it). */
  private keepAliveOnce(etcdLease: string): Promise<number> {
    return this.call('keep the lease alive', async (e) => {
      const stream = await e.leaseClient.leaseKeepAlive(this.deadline);
      try {
        return await new Promise<number>((resolve, reject) => {
          stream.on('data', (res: { TTL: string }) => resolve(Number(res.TTL)));
          stream.on('error', reject);
          stream.on('end', () => reject(new Error('keepalive stream ended')));
          stream.write({ ID: etcdLease });
        });
      } finally {
        stream.end();
      }
    });
  }

  async list(): Promise<Lease[]> {
    const { kvs, revision } = await this.rangeSubnets();
    const ttls = await this.leaseTtls(kvs.map((kv) => kv.lease));
    const now = Date.now();
    const leases: Lease[] = [];
    for (const kv of kvs) {
      const lease = this.toLease(kv);
      if (!lease) continue;
      const ttl = ttls.get(kv.lease);
      if (ttl !== undefined) lease.expiration = new Date(now + ttl * 1000);
      leases.push(lease);
    }
    this.listRevision = revision;
    return leases;
  }

  /** Remaining TTL of each etcd lease, asked in parallel; one that fails is left out. */
  private async leaseTtls(ids: string[]): Promise<Map<string, number>> {
    const distinct = [...new Set(ids)].filter((id) => id !== noLease);
    const etcd = await this.client();
    const answers = await Promise.all(distinct.map((ID) => etcd.leaseClient.leaseTimeToLive({ ID }, this.deadline).then((r) => [ID, Number(r.TTL)] as const, () => undefined)));
    return new Map(answers.filter((a) => a !== undefined && a[1] >= 0) as [string, number][]);
  }

  /** A key-value as a Lease, or undefined (with a warning) when malformed. */
  private toLease(kv: IKeyValue, expiration?: Date): Lease | undefined {
    const key = kv.key.toString().slice(this.subnetsPrefix.length);
    const subnets = subnetsOfKey(key);
    const attrs = parseLeaseValue(kv.value.toString());
    if (!subnets || typeof attrs === 'string') {
      this.log.warn({ key: kv.key.toString(), reason: subnets ? attrs : 'key is not <ip>-<len>[&<ip6>-<len>]' }, 'skipping a malformed lease in etcd');
      return undefined;
    }
    return { ...subnets, attrs, ...(expiration ? { expiration } : {}) };
  }

  async watch(onEvent: (e: LeaseEvent) => void, onError: (err: Error) => void): Promise<LeaseWatch> {
    const etcd = await this.client();
    // Without a list() first, follow changes from now on.
    let seen = this.listRevision || Number((await this.call('read the revision', (e) => e.kv.range({ ...prefixRange(this.subnetsPrefix), count_only: true }, this.deadline))).header.revision);
    let open = true;
    const watcher = etcd.watch().prefix(this.subnetsPrefix).startRevision(String(seen + 1)).watcher();
    // etcd3 resumes a broken stream from the revision after the last response's header, which
    // may run ahead of the events delivered; resume from the last event we passed on instead.
    const resumeFrom = () => (watcher.request.start_revision = String(seen + 1));
    const deliver = (e: LeaseEvent) => {
      try {
        onEvent(e);
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'lease watch callback threw');
      }
    };
    watcher.on('data', (res: IWatchResponse) => {
      if (!open) return;
      let last = seen;
      for (const ev of res.events) {
        const rev = Number(ev.kv.mod_revision);
        if (rev <= seen) continue; // replayed after a reconnect
        last = Math.max(last, rev);
        const key = ev.kv.key.toString().slice(this.subnetsPrefix.length);
        if (ev.type === 'Delete') deliver({ type: 'delete', key });
        else {
          const lease = this.toLease(ev.kv, ev.kv.lease === noLease ? undefined : new Date(Date.now() + this.ttlSeconds * 1000));
          if (lease) deliver({ type: 'put', lease });
        }
      }
      // An empty response is a progress notice: everything up to its revision has been sent.
      seen = res.events.length === 0 ? Math.max(seen, Number(res.header.revision)) : last;
      resumeFrom();
    });
    watcher.on('connected', resumeFrom);
    watcher.on('disconnected', (err: Error) => {
      resumeFrom();
      if (open) this.log.warn({ err: errorMessage(err), fromRevision: seen + 1 }, 'lease watch disconnected from etcd; reconnecting');
    });
    watcher.on('error', (err: Error) => {
      // etcd cancels a watch whose start revision was compacted away (or for other reasons).
      if (!open) return;
      open = false;
      this.watches.delete(handle);
      onError(new BerthError('aborted', `etcd watch of ${this.subnetsPrefix} from revision ${seen + 1} ended: ${err.message}; list again`, { cause: err }));
    });
    const handle: LeaseWatch = {
      close: async () => {
        if (!open) return;
        open = false;
        this.watches.delete(handle);
        await Promise.race([watcher.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
      },
    };
    this.watches.add(handle);
    return handle;
  }

  async release(): Promise<void> {
    this.stopRenewal();
    const held = this.held;
    this.held = undefined;
    if (!held) return;
    if (held.etcdLease === noLease) {
      this.log.info({ key: held.key }, 'leaving the reservation in place');
      return;
    }
    const full = Buffer.from(this.subnetsPrefix + held.key);
    // Delete only while the key is still bound to our etcd lease, i.e. still ours.
    await this.call('delete the lease', (e) => e.kv.txn({ compare: [{ key: full, target: 'Lease', result: 'Equal', lease: held.etcdLease }], success: [{ request_delete_range: { key: full } }] }, this.deadline));
    await this.revoke(held.etcdLease);
    this.log.info({ key: held.key }, 'released the lease');
  }

  async close(): Promise<void> {
    this.stopRenewal();
    await Promise.all([...this.watches].map((w) => w.close()));
    this.closed = true;
    const etcd = this.etcd;
    this.etcd = undefined;
    if (etcd) (await etcd.catch(() => undefined))?.close();
  }
}
