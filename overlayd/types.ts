// The shapes overlayd's parts share: the cluster network configuration, a node's lease, and
// the lease store interface its three backends (etcd, kube, file) implement.

/** Backend settings of the network config (only VXLAN is built). */
export interface BackendConfig {
  type: 'vxlan';
  /** VXLAN network identifier; the device is named berth.<vni>. */
  vni: number;
  /** UDP port of the VXLAN traffic. */
  port: number;
  /** Overlay MTU; undefined = the underlay MTU minus VXLAN's overhead (50 over IPv4, 70 when IPv6 is on). */
  mtu?: number;
  /** Route straight to peers on the same L2 subnet as ours, without encapsulation. */
  directRouting: boolean;
}

/** The cluster network, as stored at <prefix>/config (etcd) or in --network-config. */
export interface NetworkConfig {
  enableIPv4: boolean;
  enableIPv6: boolean;
  /** Cluster CIDR (IPv4), e.g. 10.244.0.0/16; set when enableIPv4. */
  network?: string;
  /** Prefix length of a node subnet (default 24). */
  subnetLen: number;
  /** First and last subnet that may be leased (network addresses); default: all but the first. */
  subnetMin?: string;
  subnetMax?: string;
  ipv6Network?: string;
  ipv6SubnetLen: number;
  ipv6SubnetMin?: string;
  ipv6SubnetMax?: string;
  backend: BackendConfig;
}

/** What a node publishes with its lease: how others reach it. */
export interface LeaseAttrs {
  /** The node's underlay (public) IPv4 address: the VXLAN tunnel endpoint. */
  publicIP: string;
  publicIPv6?: string;
  backendType: 'vxlan';
  /** VTEP data: the MAC of the node's berth.<vni> device, and the VNI. */
  backendData: { vtepMAC: string; vni: number };
  /** The IPv6 VTEP (a separate device in dual-stack), when IPv6 is on. */
  backendV6Data?: { vtepMAC: string; vni: number };
}

export interface Lease {
  /** The node's IPv4 subnet (CIDR, network address), when IPv4 is on. */
  subnet?: string;
  ipv6Subnet?: string;
  attrs: LeaseAttrs;
  /** When the lease runs out unless renewed; undefined = never (a reservation, or the kube/file stores). */
  expiration?: Date;
}

/** The key a lease is known by across stores: "10.244.3.0-24" (+ "&fd00:..-64" when dual-stack), as in etcd. */
export function leaseKey(l: Pick<Lease, 'subnet' | 'ipv6Subnet'>): string {
  const v4 = l.subnet?.replace('/', '-');
  const v6 = l.ipv6Subnet?.replace('/', '-');
  return v4 && v6 ? `${v4}&${v6}` : (v4 ?? v6 ?? '');
}

export type LeaseEvent = { type: 'put'; lease: Lease } | { type: 'delete'; key: string };

export interface LeaseWatch {
  /** Stop watching; no callback runs after the returned promise settles. */
  close(): Promise<void>;
}

export interface LeaseStore {
  /** Short name for logs: "etcd", "kube", "file". */
  readonly name: string;
  /** The network config this store holds (etcd <prefix>/config; kube and file: --network-config). */
  getNetworkConfig(): Promise<NetworkConfig>;
  /**
   * Take this node's lease: the previous one of this node when it still exists (or a reservation
   * for its public IP, or `previous` from the subnet file when that subnet is free), else a
   * free subnet. Keeps it alive (renewal) until release() or close().
   */
  acquire(attrs: LeaseAttrs, config: NetworkConfig, previous?: Pick<Lease, 'subnet' | 'ipv6Subnet'>): Promise<Lease>;
  /** Every current lease, this node's included. */
  list(): Promise<Lease[]>;
  /**
   * Follow lease changes after list(): a lease created or changed arrives as `put`, one deleted
   * or expired as `delete` (by leaseKey). onError gets a watch that broke and could not resume;
   * the caller relists then.
   */
  watch(onEvent: (e: LeaseEvent) => void, onError: (err: Error) => void): Promise<LeaseWatch>;
  /**
   * Called when the store had to take a lease again (ours expired while etcd was out of reach)
   * and another node had taken our subnet meanwhile: this node now has a different subnet.
   */
  onSubnetChange?: (lease: Lease) => void;
  /** Give this node's lease back (the --remove-on-exit case). */
  release(): Promise<void>;
  /** Stop renewing and disconnect; the lease stays until it expires (a restart takes it back). */
  close(): Promise<void>;
}
