import { formatIp, formatSubnet, lastAddress, type Family, type IpAddress, type Subnet } from '../../lib/ip.js';

// The allocation strategy of the reference host-local, as pure functions over numbers: which
// addresses of a range set are candidates, and in what order. Round-robin: start right after
// the last address reserved in this range set and wrap around, so a crash-looping container
// does not get the same address back until the whole set has been used. Nothing here touches
// the disk; the store tries the candidates in order with an exclusive create.

export interface AddressRange {
  family: Family;
  subnet: Subnet;
  /** First allocatable address, inclusive. */
  rangeStart: bigint;
  /** Last allocatable address, inclusive. */
  rangeEnd: bigint;
  gateway: bigint;
  /** Where the range came from in the config, e.g. "ipam.ranges[0][1]", for messages. */
  field: string;
}

/** Ranges of one family; each range set yields one address per container. */
export type RangeSet = AddressRange[];

export interface Candidate {
  address: IpAddress;
  range: AddressRange;
}

export function describeRange(range: AddressRange): string {
  return `${formatSubnet(range.subnet)} (${formatIp(range.rangeStart, range.family)}-${formatIp(range.rangeEnd, range.family)})`;
}

export function describeRangeSet(set: RangeSet): string {
  return set.map(describeRange).join(', ');
}

/**
 * Addresses inside the range that are never handed out: the gateway, the network address
 * (subnet-router anycast in IPv6) and the IPv4 broadcast address.
 */
export function isExcluded(range: AddressRange, value: bigint): boolean {
  if (value === range.gateway || value === range.subnet.network) return true;
  return range.family === 4 && value === lastAddress(range.subnet);
}

export function rangeContains(range: AddressRange, address: IpAddress): boolean {
  return address.family === range.family && address.value >= range.rangeStart && address.value <= range.rangeEnd;
}

/** The range of the set that holds the address, if any. */
export function rangeFor(set: RangeSet, address: IpAddress): AddressRange | undefined {
  return set.find((r) => rangeContains(r, address));
}

export function rangesOverlap(a: AddressRange, b: AddressRange): boolean {
  return a.family === b.family && a.rangeStart <= b.rangeEnd && b.rangeStart <= a.rangeEnd;
}

export function rangeSetsOverlap(a: RangeSet, b: RangeSet): boolean {
  return a.some((ra) => b.some((rb) => rangesOverlap(ra, rb)));
}

/**
 * Every address of the set once, in allocation order: after `cursor` (the last reserved
 * address) if it lies in the set, ending with the cursor itself; otherwise from the first
 * range's start. Excluded addresses are skipped. Lazy, because an IPv6 range can be 2^64 long.
 */
export function* candidateOrder(set: RangeSet, cursor?: IpAddress): Generator<Candidate> {
  if (set.length === 0) return;
  let index = 0;
  let start: bigint;
  const cursorRange = cursor ? set.findIndex((r) => rangeContains(r, cursor)) : -1;
  if (cursor && cursorRange >= 0) {
    index = cursorRange;
    const range = set[index] as AddressRange;
    if (cursor.value < range.rangeEnd) {
      start = cursor.value + 1n;
    } else {
      index = (index + 1) % set.length;
      start = (set[index] as AddressRange).rangeStart;
    }
  } else {
    start = (set[0] as AddressRange).rangeStart;
  }
  // Walk ranges from `index`, wrapping, until every address of every range was visited once.
  const first = { index, value: start };
  let value = start;
  for (;;) {
    const range = set[index] as AddressRange;
    if (!isExcluded(range, value)) yield { address: { family: range.family, value }, range };
    if (value < range.rangeEnd) {
      value += 1n;
    } else {
      index = (index + 1) % set.length;
      value = (set[index] as AddressRange).rangeStart;
    }
    if (index === first.index && value === first.value) return;
  }
}

/** How many addresses of the range could be handed out if none were reserved. */
export function allocatableCount(range: AddressRange): bigint {
  let count = range.rangeEnd - range.rangeStart + 1n;
  const excluded = new Set([range.gateway, range.subnet.network]);
  if (range.family === 4) excluded.add(lastAddress(range.subnet));
  for (const v of excluded) if (v >= range.rangeStart && v <= range.rangeEnd) count -= 1n;
  return count;
}

/** Free addresses left in the set, given the addresses already reserved (any family). */
export function freeAddressCount(set: RangeSet, reserved: Iterable<IpAddress>): bigint {
  let free = set.reduce((n, r) => n + allocatableCount(r), 0n);
  const seen = new Set<bigint>();
  for (const address of reserved) {
    const range = rangeFor(set, address);
    if (!range || isExcluded(range, address.value) || seen.has(address.value)) continue;
    seen.add(address.value);
    free -= 1n;
  }
  return free;
}

export interface AllocationRequest {
  set: RangeSet;
  /** Addresses already leased (of any family; those outside the set are ignored). */
  reserved: Iterable<IpAddress>;
  /** The last address reserved in this range set (last_reserved_ip.N). */
  cursor?: IpAddress | undefined;
  /** An address the runtime asked for; then it is the only candidate. */
  requested?: IpAddress | undefined;
}

/** Why a requested address cannot be given out, or undefined if it can. */
export function requestedAddressProblem(set: RangeSet, requested: IpAddress): string | undefined {
  const text = formatIp(requested.value, requested.family);
  const range = rangeFor(set, requested);
  if (!range) return `${text} is not in range set ${describeRangeSet(set)}`;
  if (requested.value === range.gateway) return `${text} is the gateway of ${describeRange(range)}`;
  if (isExcluded(range, requested.value)) return `${text} is the network or broadcast address of ${describeRange(range)}`;
  return undefined;
}

/**
 * The candidates to try, in order, leaving out the ones already reserved. A requested address
 * is the single candidate (or none if it is reserved). The caller still has to win an
 * exclusive create for each: another process may take a candidate first.
 */
export function* allocationCandidates(request: AllocationRequest): Generator<Candidate> {
  const family = request.set[0]?.family;
  const taken = new Set<bigint>();
  for (const a of request.reserved) if (a.family === family) taken.add(a.value);
  if (request.requested) {
    if (requestedAddressProblem(request.set, request.requested) !== undefined) return;
    const range = rangeFor(request.set, request.requested) as AddressRange;
    if (!taken.has(request.requested.value)) yield { address: request.requested, range };
    return;
  }
  for (const candidate of candidateOrder(request.set, request.cursor)) {
    if (!taken.has(candidate.address.value)) yield candidate;
  }
}
