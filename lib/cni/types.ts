// The CNI spec (containernetworking/cni SPEC.md, 1.1.0) as TypeScript types. Results are kept in
// the newest (1.1.0) shape inside berth and converted to the requested version on output.

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';

export interface CniInterface {
  name: string;
  mac?: string;
  /** 1.1.0 */
  mtu?: number;
  sandbox?: string;
  /** 1.1.0 */
  socketPath?: string;
  /** 1.1.0 */
  pciID?: string;
}

export interface CniIpConfig {
  /** CIDR notation: the address and the prefix length of its subnet. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  /** 1.1.0 */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

export interface CniErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** One entry of `cni.dev/valid-attachments` in a GC request. */
export interface CniAttachment {
  containerID: string;
  ifname: string;
}

/** The keys every plugin configuration has; the rest is plugin specific. */
export interface NetConfBase {
  cniVersion: string;
  name: string;
  type: string;
  ipam?: { type?: string; [key: string]: unknown };
  dns?: CniDns;
  runtimeConfig?: Record<string, unknown>;
  prevResult?: unknown;
  [key: string]: unknown;
}
