import { BerthError } from '../../lib/errors.js';
import type { CniCommand, CniRoute } from '../../lib/cni/types.js';
import { isObject, optArray, optInt, optObject, optString, type Json } from '../../lib/cni/validate.js';
import { describeRange, rangeSetsOverlap, rangesOverlap, type AddressRange, type RangeSet } from './allocator.js';
import {
  addressBits,
  familyName,
  formatAddress,
  formatIp,
  formatSubnet,
  lastAddress,
  tryParseCidr,
  parseIp,
  subnetContains,
  subnetOf,
  type IpAddress,
} from '../../lib/ip.js';

// The host-local IPAM configuration, read from the whole network config (the IPAM part sits
// under "ipam"), with the reference plugin's fields and defaults
// (containernetworking/plugins, plugins/ipam/host-local/backend/allocator/config.go, range.go).
// Every error names the field path, e.g. ipam.ranges[0][1].subnet.

export const defaultDataDir = '/var/lib/cni/networks';

/** An address the runtime asked for, and where it came from (for messages). */
export interface RequestedIp {
  address: IpAddress;
  field: string;
}

export interface HostLocalConfig {
  /** The network name: the lease directory under dataDir. */
  network: string;
  ranges: RangeSet[];
  routes: CniRoute[];
  dataDir: string;
  resolvConf: string | undefined;
  /** From runtimeConfig.ips and args.cni.ips (ADD only); CNI_ARGS IP= is added at ADD time. */
  requestedIps: RequestedIp[];
}

// CNI spec, "name": alphanumeric first, then alphanumerics, '_', '.', '-'. It becomes a
// directory name, so this also keeps it from escaping dataDir.
const networkNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function invalid(message: string): BerthError {
  return new BerthError('invalid-config', message);
}

function addressField(obj: Json, key: string, path: string): IpAddress | undefined {
  const text = optString(obj, key, path);
  if (text === undefined || text === '') return undefined;
  const address = parseIp(text);
  if (!address) throw invalid(`${path}${key}: expected an IP address, got ${JSON.stringify(text)}`);
  return address;
}

function parseRange(raw: unknown, field: string): AddressRange {
  if (!isObject(raw)) throw invalid(`${field}: expected a range object {"subnet": ...}, got ${JSON.stringify(raw)}`);
  const prefix = `${field}.`;
  const subnetText = optString(raw, 'subnet', prefix);
  if (subnetText === undefined || subnetText === '') throw invalid(`${prefix}subnet: required field is missing`);
  const cidr = tryParseCidr(subnetText);
  if (!cidr) throw invalid(`${prefix}subnet: expected a CIDR subnet like 10.22.0.0/16, got ${JSON.stringify(subnetText)}`);
  const subnet = subnetOf(cidr);
  const family = subnet.family;
  if (subnet.network !== cidr.address.value) {
    throw invalid(`${prefix}subnet: ${JSON.stringify(subnetText)} has host bits set; the network is ${formatSubnet(subnet)}`);
  }
  // Like the reference: a subnet without two host addresses has nothing to allocate.
  if (cidr.prefixLength > addressBits(family) - 2) {
    throw invalid(`${prefix}subnet: network ${formatSubnet(subnet)} too small to allocate from`);
  }
  const inSubnet = (key: string): IpAddress | undefined => {
    const address = addressField(raw, key, prefix);
    if (address && !subnetContains(subnet, address)) {
      const what = address.family === family ? 'is not in' : `is ${familyName(address.family)}, not in`;
      throw invalid(`${prefix}${key}: ${formatAddress(address)} ${what} subnet ${formatSubnet(subnet)}`);
    }
    return address;
  };
  const gateway = inSubnet('gateway')?.value ?? subnet.network + 1n;
  // The default start is .1 as in the reference; the gateway (.1 by default) is skipped when
  // allocating, so the first address handed out is .2.
  const rangeStart = inSubnet('rangeStart')?.value ?? subnet.network + 1n;
  const rangeEnd = inSubnet('rangeEnd')?.value ?? (family === 4 ? lastAddress(subnet) - 1n : lastAddress(subnet));
  if (rangeStart > rangeEnd) {
    throw invalid(`${prefix}rangeEnd: ${formatIp(rangeEnd, family)} comes before rangeStart ${formatIp(rangeStart, family)}`);
  }
  return { family, subnet, rangeStart, rangeEnd, gateway, field };
}

function parseRangeSet(raw: unknown, field: string): RangeSet {
  if (!Array.isArray(raw)) throw invalid(`${field}: expected a range set (an array of ranges), got ${JSON.stringify(raw)}`);
  if (raw.length === 0) throw invalid(`${field}: a range set needs at least one range`);
  const set = raw.map((r, j) => parseRange(r, `${field}[${j}]`));
  const family = set[0]?.family;
  for (const range of set) {
    if (range.family !== family) {
      throw invalid(`${range.field}.subnet: ${formatSubnet(range.subnet)} is ${familyName(range.family)} but ${field}[0] is ${familyName(family ?? 4)}; one range set holds one address family`);
    }
  }
  for (let a = 0; a < set.length; a++) {
    for (let b = a + 1; b < set.length; b++) {
      const ra = set[a] as AddressRange;
      const rb = set[b] as AddressRange;
      if (rangesOverlap(ra, rb)) throw invalid(`${rb.field}: ${describeRange(rb)} overlaps ${ra.field} ${describeRange(ra)}`);
    }
  }
  return set;
}

function parseRangeSets(raw: unknown, field: string): RangeSet[] {
  if (!Array.isArray(raw)) throw invalid(`${field}: expected an array of range sets, got ${JSON.stringify(raw)}`);
  return raw.map((set, i) => parseRangeSet(set, `${field}[${i}]`));
}

const legacyKeys = ['subnet', 'rangeStart', 'rangeEnd', 'gateway'] as const;

function parseRanges(raw: Json, ipam: Json): RangeSet[] {
  let sets: RangeSet[] = [];
  const runtime = optObject(raw, 'runtimeConfig', '');
  const ipRanges = runtime ? optArray(runtime, 'ipRanges', 'runtimeConfig.') : undefined;
  const ranges = optArray(ipam, 'ranges', 'ipam.');
  if (ranges) sets = parseRangeSets(ranges, 'ipam.ranges');
  // The old single-range form: subnet/rangeStart/rangeEnd/gateway directly under ipam,
  // prepended as its own range set.
  const subnet = optString(ipam, 'subnet', 'ipam.');
  if (subnet) {
    const legacy: Json = {};
    for (const k of legacyKeys) if (ipam[k] !== undefined) legacy[k] = ipam[k];
    sets = [[parseRange(legacy, 'ipam')], ...sets];
  } else {
    const stray = legacyKeys.find((k) => k !== 'subnet' && ipam[k] !== undefined && ipam[k] !== null && ipam[k] !== '');
    if (stray) throw invalid(`ipam.${stray}: only valid together with ipam.subnet (or put it in a range under ipam.ranges)`);
  }
  // Capability "ipRanges": the runtime's range sets go in front of the configured ones, as the
  // reference host-local does (a config usually carries none when the runtime supplies them).
  if (ipRanges && ipRanges.length > 0) sets = [...parseRangeSets(ipRanges, 'runtimeConfig.ipRanges'), ...sets];
  if (sets.length === 0) throw invalid('ipam.ranges: required field is missing (no IP ranges configured)');
  for (let a = 0; a < sets.length; a++) {
    for (let b = a + 1; b < sets.length; b++) {
      if (rangeSetsOverlap(sets[a] as RangeSet, sets[b] as RangeSet)) {
        const fa = (sets[a] as RangeSet)[0]?.field ?? '';
        const fb = (sets[b] as RangeSet)[0]?.field ?? '';
        throw invalid(`${setField(fb)}: range set overlaps range set ${setField(fa)}`);
      }
    }
  }
  return sets;
}

/** "ipam.ranges[1][0]" -> "ipam.ranges[1]"; the legacy "ipam" stays as it is. */
function setField(rangeField: string): string {
  return rangeField.endsWith(']') ? rangeField.slice(0, rangeField.lastIndexOf('[')) : rangeField;
}

function parseRoutes(ipam: Json): CniRoute[] {
  const routes = optArray(ipam, 'routes', 'ipam.') ?? [];
  return routes.map((r, i) => {
    const field = `ipam.routes[${i}]`;
    if (!isObject(r)) throw invalid(`${field}: expected {"dst": CIDR, "gw"?: IP}, got ${JSON.stringify(r)}`);
    const dstText = optString(r, 'dst', `${field}.`);
    if (dstText === undefined || dstText === '') throw invalid(`${field}.dst: required field is missing`);
    const dst = tryParseCidr(dstText);
    if (!dst) throw invalid(`${field}.dst: expected a CIDR like 0.0.0.0/0, got ${JSON.stringify(dstText)}`);
    // Written back in canonical form, host bits kept, as the reference prints it.
    const route: CniRoute = { dst: `${formatAddress(dst.address)}/${dst.prefixLength}` };
    const gw = addressField(r, 'gw', `${field}.`);
    if (gw) {
      if (gw.family !== dst.address.family) throw invalid(`${field}.gw: ${formatAddress(gw)} is not the same address family as dst ${dstText}`);
      route.gw = formatAddress(gw);
    }
    // Route attributes added in spec 1.1.0, passed through when given.
    for (const key of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
      const v = optInt(r, key, `${field}.`, 0, 0xffffffff);
      if (v !== undefined) route[key] = v;
    }
    return route;
  });
}

/** One requested address: a plain IP, or IP/prefix (the "ips" capability allows both). */
export function parseRequestedIp(text: unknown, field: string, kind: 'invalid-config' | 'invalid-environment' = 'invalid-config'): RequestedIp {
  const address = typeof text === 'string' ? (parseIp(text) ?? tryParseCidr(text)?.address) : undefined;
  if (!address) throw new BerthError(kind, `${field}: expected an IP address, got ${JSON.stringify(text)}`);
  return { address, field };
}

function requestedList(obj: Json | undefined, key: string, path: string): RequestedIp[] {
  if (!obj) return [];
  const list = optArray(obj, key, path) ?? [];
  return list.map((text, i) => parseRequestedIp(text, `${path}${key}[${i}]`));
}

/** CNI_ARGS IP=: one address or several separated by commas. */
export function requestedFromCniArgs(value: string | undefined): RequestedIp[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((text) => parseRequestedIp(text.trim(), 'CNI_ARGS IP', 'invalid-environment'));
}

/** Drop repeats of the same address, keeping the first mention (as the reference's map does). */
export function uniqueRequests(requests: RequestedIp[]): RequestedIp[] {
  const seen = new Set<string>();
  return requests.filter((r) => {
    const key = `${r.address.family}/${r.address.value}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function parseHostLocalConfig(raw: Json, command: CniCommand): HostLocalConfig {
  const network = optString(raw, 'name', '');
  if (network === undefined || network === '') throw invalid('name: required field is missing');
  if (!networkNamePattern.test(network)) {
    throw invalid(`name: ${JSON.stringify(network)} is not a valid network name (letters, digits, '_', '.', '-'; starting with a letter or digit)`);
  }
  const ipam = raw.ipam;
  if (ipam === undefined || ipam === null) throw invalid('ipam: required field is missing');
  if (!isObject(ipam)) throw invalid(`ipam: expected an object, got ${JSON.stringify(ipam)}`);
  const ranges = parseRanges(raw, ipam);
  const routes = parseRoutes(ipam);
  const dataDir = optString(ipam, 'dataDir', 'ipam.') || defaultDataDir;
  const resolvConf = optString(ipam, 'resolvConf', 'ipam.') || undefined;
  // Requested addresses only matter to ADD; a DEL must not fail over a bad request.
  let requestedIps: RequestedIp[] = [];
  if (command === 'ADD') {
    const args = optObject(raw, 'args', '');
    const cni = args ? optObject(args, 'cni', 'args.') : undefined;
    const runtime = optObject(raw, 'runtimeConfig', '');
    requestedIps = [...requestedList(cni, 'ips', 'args.cni.'), ...requestedList(runtime, 'ips', 'runtimeConfig.')];
  }
  return { network, ranges, routes, dataDir, resolvConf, requestedIps };
}
