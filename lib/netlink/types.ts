import type { Family } from '../ip.js';

// The shapes lib/netlink/rtnl.ts takes and returns: what to create (VethSpec, VxlanSpec, RouteSpec,
// ...) and what the kernel reports (LinkInfo, AddressInfo, RouteInfo, ...). Types only, so the
// message builders and the session can both use them without importing each other.

export interface LinkInfo {
  index: number;
  name: string;
  /** "aa:bb:cc:dd:ee:ff"; empty for links without one. */
  mac: string;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  promisc: boolean;
  /** IFF_ALLMULTI: receives all multicast; absent when off. */
  allmulti?: boolean;
  /** IFLA_TXQLEN. */
  txQLen?: number;
  /** IFLA_IFALIAS, the free-form description `ip link set alias` sets. */
  alias?: string;
  /** IFLA_INFO_KIND: "bridge", "veth", "vxlan", ...; undefined for lo and physical devices. */
  kind?: string;
  /** The bridge (or bond) this link is enslaved to. */
  masterIndex?: number;
  /** IFLA_LINK: for a veth, the peer's ifindex, in the peer's namespace. */
  linkIndex?: number;
  /** IFLA_LINK_NETNSID: set when the peer lives in another namespace. */
  linkNetnsId?: number;
  /** The VXLAN settings, for kind "vxlan". */
  vxlan?: VxlanInfo;
}

export interface VxlanSpec {
  name: string;
  /** IFLA_VXLAN_ID, 0-16777215. */
  vni: number;
  /** IFLA_VXLAN_PORT: the UDP destination port (flannel: 8472, IANA: 4789). */
  port: number;
  /** IFLA_VXLAN_LOCAL (IPv4) or IFLA_VXLAN_LOCAL6: the source address of encapsulated packets. */
  local?: string;
  /** IFLA_VXLAN_LINK: the underlay device. */
  underlayIndex?: number;
  /** IFLA_VXLAN_LEARNING; default false (the overlay programs the FDB itself). */
  learning?: boolean;
  mtu?: number;
  mac?: string;
}

export interface VxlanInfo {
  vni: number;
  port: number;
  local?: string;
  underlayIndex?: number;
  learning: boolean;
}

/** An ARP (IPv4) or NDP (IPv6) entry. */
export interface NeighborInfo {
  index: number;
  ip: string;
  /** "" while unresolved. */
  mac: string;
  /** NUD_* bits. */
  state: number;
  permanent: boolean;
  family: Family;
}

/** A forwarding database entry (AF_BRIDGE neighbour): for a VXLAN device, MAC -> remote VTEP. */
export interface FdbEntry {
  index: number;
  mac: string;
  /** NDA_DST: the remote VTEP's address (VXLAN devices). */
  dst?: string;
  permanent: boolean;
  /** NTF_SELF: kept by the device itself, not by a bridge it is a port of. */
  self: boolean;
  /** NUD_* bits. */
  state: number;
  /** NDA_MASTER: the bridge, for entries a bridge keeps. */
  masterIndex?: number;
  /** NDA_VNI, when the entry names its own. */
  vni?: number;
}

export interface AddressInfo {
  index: number;
  family: Family;
  address: string;
  prefixLength: number;
  /** address/prefixLength */
  cidr: string;
  scope: number;
  /** IFA_F_* bits. */
  flags: number;
  label?: string;
}

export interface RouteSpec {
  /** Destination CIDR; "0.0.0.0/0" or "::/0" for a default route. Host bits are ignored. */
  dst: string;
  gw?: string;
  /** Output interface index. */
  index?: number;
  /** "universe" | "link" | "host" or the number; default universe with a gateway, else link. */
  scope?: 'universe' | 'link' | 'host' | number;
  /** Gateway is reachable on the link even without a matching subnet route. */
  onlink?: boolean;
  /** Routing table, default main (254). */
  table?: number;
  mtu?: number;
  advmss?: number;
  /** Metric. */
  priority?: number;
  /** Preferred source address. */
  src?: string;
}

export interface RouteInfo {
  family: Family;
  dst: string;
  gw?: string;
  index?: number;
  table: number;
  protocol: number;
  scope: number;
  /** RTN_*: 1 unicast, 2 local, ... */
  type: number;
  onlink: boolean;
  priority?: number;
  mtu?: number;
  advmss?: number;
  src?: string;
}

export interface VethSpec {
  /** The end created in the session's namespace. */
  name: string;
  peerName: string;
  /** MTU of both ends. */
  mtu?: number;
  /** Put the peer straight into this namespace (by fd, IFLA_NET_NS_FD). */
  peerNetnsPath?: string;
  /** MAC of `name`; the kernel picks a random one when unset. */
  mac?: string;
  peerMac?: string;
}

export interface BridgeOptions {
  mtu?: number;
  vlanFiltering?: boolean;
  mac?: string;
}

export interface BridgeVlan {
  vid: number;
  pvid: boolean;
  untagged: boolean;
}

export interface BridgePortInfo {
  index: number;
  name: string;
  masterIndex: number;
  hairpin: boolean;
  vlans: BridgeVlan[];
}
