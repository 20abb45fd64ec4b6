import { readFileSync, rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../lib/atomic-file.js';
import { BerthError, errorMessage, type ErrorKind } from '../lib/errors.js';
import { networkCidr, nthAddress, parseCidr, type Family } from '../lib/ip.js';
import { RtnlSession } from '../lib/netlink/rtnl.js';
import { writeSysctl } from '../lib/sysctl.js';
import type { OverlaydConfig } from './config.js';
import { overlayMtu, VxlanDataPlane } from './dataplane.js';
import { selectUnderlay, type Underlay } from './iface.js';
import { Masquerade, type MasqScope } from './masq.js';
import { OverlayMetrics } from './metrics.js';
import { PeerLeaseFilter, PeerLeases, type PeerLeaseContext } from './peer-lease.js';
import { formatSubnetEnv, parseSubnetEnv } from './subnet-env.js';
import { leaseKey, type Lease, type LeaseAttrs, type LeaseEvent, type LeaseStore, type LeaseWatch, type NetworkConfig } from './types.js';

// berth-overlayd's life: take a lease, build the VXLAN device, write subnet.env, program every
// other node's entries, then follow the store. Events are applied one at a time, in order, each
// touching one peer; a timer compares the whole data plane with the leases and repairs drift.
// A broken watch (etcd compaction, a 410 from the API server) means: list again, resync, watch.

/** Store errors that a retry cannot fix. */
const permanent = new Set<ErrorKind>(['invalid-config', 'invalid-argument', 'resource-exhausted', 'failed-precondition', 'deadline-exceeded', 'unimplemented']);

export class Overlayd {
  readonly metrics = new OverlayMetrics();
  ready = false;
  /** Last time a resync or relist completed (for /healthz). */
  lastGood = Date.now();
  lease?: Lease;
  network?: NetworkConfig;
  /** `network` as peer leases are checked against it (see peerRulesFor). */
  private peerRules?: NetworkConfig;
  underlay?: Underlay;
  private nl?: RtnlSession;
  private planes: VxlanDataPlane[] = [];
  private masq?: Masquerade;
  private watch?: LeaseWatch;
  private timer?: NodeJS.Timeout;
  private relistTimer?: NodeJS.Timeout;
  /** Other nodes' leases by key. */
  private readonly peers = new PeerLeases();
  /** Which peer leases may be programmed; logs and counts the others once per revision. */
  private readonly filter: PeerLeaseFilter;
  /** Every kernel change runs in this chain, one after another. */
  private queue: Promise<void> = Promise.resolve();
  private stopping = false;
  /** What to do when the daemon cannot go on (main: stop cleanly and exit non-zero). */
  onFatal?: (err: Error) => void;

  constructor(
    readonly config: OverlaydConfig,
    private readonly store: LeaseStore,
    private readonly log: Logger,
  ) {
    this.filter = new PeerLeaseFilter(log, (reason) => this.metrics.leasesRejected[reason]++);
  }

  get peerCount(): number {
    return this.peers.size;
  }

  async start(): Promise<void> {
    const c = this.config;
    this.nl = await RtnlSession.open();
    const net = await this.untilAvailable('read the network config', () => this.store.getNetworkConfig());
    this.network = net;
    const underlay = await selectUnderlay(this.nl, { iface: c.iface, ifaceRegex: c.ifaceRegex, publicIp: c.publicIp });
    this.underlay = underlay;
    const families: Family[] = [...(net.enableIPv4 ? [4 as const] : []), ...(net.enableIPv6 ? [6 as const] : [])];
    const mtu = overlayMtu(underlay.mtu, families, net.backend.mtu);
    this.log.info({ underlay: underlay.name, address: underlay.address, publicIP: underlay.publicIP, publicIPv6: underlay.publicIPv6, mtu, store: this.store.name }, 'underlay chosen');
    this.planes = families.map((family) => new VxlanDataPlane(this.nl!, { family, vni: net.backend.vni, port: net.backend.port, mtu, directRouting: net.backend.directRouting, underlay, log: this.log }));
    const macs = new Map<Family, string>();
    for (const p of this.planes) macs.set(p.family, await p.ensureDevice());
    const attrs: LeaseAttrs = {
      publicIP: underlay.publicIP,
      backendType: 'vxlan',
      backendData: { vtepMAC: macs.get(4) ?? macs.get(6)!, vni: net.backend.vni },
    };
    if (net.enableIPv6) {
      attrs.publicIPv6 = underlay.publicIPv6;
      attrs.backendV6Data = { vtepMAC: macs.get(6)!, vni: net.backend.vni };
    }
    const lease = await this.untilAvailable('acquire a lease', () => this.store.acquire(attrs, net, this.previousSubnets()));
    // A different subnet under a running node cannot be patched in: the VTEP address, subnet.env,
    // masquerade scope and every pod address depend on it. Stop and let the service manager start
    // us again, which programs everything for the new subnet from scratch.
    this.store.onSubnetChange = (l) => {
      this.log.fatal({ was: leaseKey(lease), now: leaseKey(l) }, 'this node was given a different subnet; exiting so a restart reprograms the node for it');
      this.onFatal?.(new BerthError('aborted', `the node's subnet changed from ${leaseKey(lease)} to ${leaseKey(l)}`));
    };
    this.lease = lease;
    this.peerRules = this.peerRulesFor(net, lease);
    this.log.info({ subnet: lease.subnet, ipv6Subnet: lease.ipv6Subnet, expires: lease.expiration }, 'lease acquired');
    for (const p of this.planes) await p.setLocalSubnet(p.family === 6 ? lease.ipv6Subnet! : lease.subnet!);
    // Pods' packets are forwarded between the bridge and the VXLAN device.
    if (net.enableIPv4) writeSysctl('net.ipv4.ip_forward', '1');
    if (net.enableIPv6) writeSysctl('net.ipv6.conf.all.forwarding', '1');
    if (c.ipMasq) {
      const scopes: MasqScope[] = [];
      if (net.enableIPv4) scopes.push({ family: 4, network: net.network!, subnet: lease.subnet! });
      if (net.enableIPv6) scopes.push({ family: 6, network: net.ipv6Network!, subnet: lease.ipv6Subnet! });
      this.masq = new Masquerade(scopes, c.masqBackend);
      await this.masq.apply();
      this.log.info({ backend: this.masq.backend }, 'masquerade rules installed');
    }
    await this.relist();
    this.writeSubnetEnv(mtu);
    this.ready = true;
    this.timer = setInterval(() => void this.enqueue(() => this.resync()), c.resyncInterval);
    this.log.info({ peers: this.peers.size }, 'overlay ready');
  }

  /**
   * Run a store call until the store answers: a node booting before etcd (or the API server) is
   * normal. Errors that retrying cannot fix (a bad config, a full network) are thrown at once.
   */
  private async untilAvailable<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
      try {
        return await fn();
      } catch (err) {
        const kind = err instanceof BerthError ? err.kind : 'internal';
        if (this.stopping || permanent.has(kind)) throw err;
        this.log.warn({ err: errorMessage(err), retryMs: delay }, `cannot ${what} yet; retrying`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** The subnets of the last run (subnet.env), so a restart asks for them again. */
  private previousSubnets(): Pick<Lease, 'subnet' | 'ipv6Subnet'> | undefined {
    try {
      const env = parseSubnetEnv(readFileSync(this.config.subnetFile, 'utf8'), this.config.subnetFile);
      const net = (cidr: string | undefined) => (cidr ? networkCidr(parseCidr(cidr)) : undefined);
      return { subnet: net(env.subnet), ipv6Subnet: net(env.ipv6Subnet) };
    } catch {
      return undefined;
    }
  }

  private writeSubnetEnv(mtu: number): void {
    const l = this.lease!;
    const n = this.network!;
    const gw = (cidr: string | undefined) => (cidr ? `${nthAddress(parseCidr(cidr), 1n)}/${cidr.split('/')[1]}` : undefined);
    writeFileAtomic(
      this.config.subnetFile,
      formatSubnetEnv({ network: n.network, subnet: gw(l.subnet), ipv6Network: n.ipv6Network, ipv6Subnet: gw(l.ipv6Subnet), mtu, ipMasq: this.config.ipMasq }),
    );
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(fn).catch((err: unknown) => {
      this.metrics.programmingErrors++;
      this.log.error({ err: errorMessage(err) }, 'programming the data plane failed; the next resync retries');
    });
    return this.queue;
  }

  private isOurs(l: Lease): boolean {
    return this.lease !== undefined && leaseKey(l) === leaseKey(this.lease);
  }

  /**
   * The network config peer leases are checked against. With the kube store the subnets are the
   * controller-manager's podCIDRs, sized by its --node-cidr-mask-size rather than SubnetLen: there
   * a peer's subnet must be as long as our own.
   */
  private peerRulesFor(net: NetworkConfig, lease: Lease): NetworkConfig {
    if (this.store.name !== 'kube') return net;
    const len = (cidr: string | undefined, fallback: number) => (cidr ? parseCidr(cidr).prefixLength : fallback);
    return { ...net, subnetLen: len(lease.subnet, net.subnetLen), ipv6SubnetLen: len(lease.ipv6Subnet, net.ipv6SubnetLen) };
  }

  /** Whether a peer's lease may be programmed, against the network, our lease and the peers taken so far. */
  private admit(l: Lease): boolean {
    const ctx: PeerLeaseContext = { network: this.peerRules ?? this.network!, peers: this.peers, ...(this.lease ? { own: this.lease } : {}), ...(this.underlay ? { underlayCidr: this.underlay.cidr } : {}) };
    return this.filter.admit(l, ctx);
  }

  /** List every lease, make the kernel match, then watch from there. */
  private async relist(): Promise<void> {
    await this.watch?.close().catch(() => undefined);
    const all = await this.store.list();
    const before = new Map(this.peers);
    this.peers.clear();
    // Peers we already program come first: a newcomer overlapping one of them is the one refused.
    const known = (l: Lease) => Number(!before.has(leaseKey(l)));
    for (const l of [...all].sort((a, b) => known(a) - known(b))) {
      if (this.isOurs(l)) continue;
      const key = leaseKey(l);
      if (this.admit(l)) this.peers.set(key, l);
      // A peer whose lease turned invalid keeps what it had: nothing of ours is replaced by it.
      else if (before.has(key)) this.peers.set(key, before.get(key)!);
    }
    this.filter.retain(new Set(all.map(leaseKey)));
    this.metrics.leasesSeen = all.length;
    await this.resync();
    this.watch = await this.store.watch(
      (e) => this.onEvent(e, process.hrtime.bigint()),
      (err) => this.onWatchError(err),
    );
  }

  private onWatchError(err: Error): void {
    if (this.stopping) return;
    this.log.warn({ err: errorMessage(err) }, 'lease watch broke; listing the leases again');
    this.metrics.relists++;
    clearTimeout(this.relistTimer);
    const retry = (delay: number): void => {
      this.relistTimer = setTimeout(() => {
        void this.enqueue(async () => {
          if (this.stopping) return;
          try {
            await this.relist();
          } catch (e) {
            this.log.warn({ err: errorMessage(e), retryMs: Math.min(delay * 2, 10_000) }, 'relist failed; retrying');
            retry(Math.min(delay * 2, 10_000));
          }
        });
      }, delay);
    };
    retry(200);
  }

  private onEvent(e: LeaseEvent, received: bigint): void {
    this.metrics.events[e.type]++;
    void this.enqueue(async () => {
      if (this.stopping) return;
      if (e.type === 'put') {
        // An invalid lease changes nothing: a peer programmed before keeps its entries.
        if (this.isOurs(e.lease) || !this.admit(e.lease)) return;
        await this.programPeer(e.lease);
      } else {
        if (this.lease && e.key === leaseKey(this.lease)) {
          this.log.warn({ lease: e.key }, 'our own lease disappeared from the store; the store renews or takes it again');
          return;
        }
        this.filter.forget(e.key);
        if (!this.peers.delete(e.key)) return;
        for (const p of this.planes) await p.removePeer(e.key);
        this.log.info({ lease: e.key }, 'peer removed');
        // A lease refused for overlapping the one just gone may be valid now.
        for (const l of this.filter.pending) if (this.admit(l)) await this.programPeer(l);
      }
      this.metrics.latency.observe(Number(process.hrtime.bigint() - received) / 1e9);
    });
  }

  private async programPeer(l: Lease): Promise<void> {
    const key = leaseKey(l);
    this.peers.set(key, l);
    for (const p of this.planes) await p.applyPeer(l);
    this.log.info({ lease: key, publicIP: l.attrs.publicIP }, 'peer programmed');
  }

  private async resync(): Promise<void> {
    if (this.stopping) return;
    let repairs = 0;
    for (const p of this.planes) repairs += await p.resync([...this.peers.values()], p.family === 6 ? this.network!.ipv6Network! : this.network!.network!);
    if (this.masq && (await this.masq.repair())) repairs++;
    this.metrics.resyncs++;
    this.lastGood = Date.now();
    if (repairs && this.ready) {
      this.metrics.resyncRepairs += repairs;
      this.log.warn({ repairs }, 'resync repaired the data plane');
    }
  }

  /** Stop: watch and timers off, masquerade rules removed, the lease kept (or released with removeOnExit). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.ready = false;
    clearInterval(this.timer);
    clearTimeout(this.relistTimer);
    await this.watch?.close().catch(() => undefined);
    await this.queue;
    if (this.masq) await this.masq.remove().catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'removing masquerade rules failed'));
    if (this.config.removeOnExit) {
      await this.store.release().catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'releasing the lease failed'));
      for (const p of this.planes) await p.destroy().catch(() => undefined);
      rmSync(this.config.subnetFile, { force: true });
      this.log.info('lease released, VXLAN device and subnet file removed (--remove-on-exit)');
    }
    await this.store.close().catch(() => undefined);
    this.nl?.close();
  }
}
