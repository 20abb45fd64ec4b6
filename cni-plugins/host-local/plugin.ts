import { readFileSync } from 'node:fs';
import { BerthError, errorMessage } from '../../lib/errors.js';
import type { CniPlugin, CommandContext, GcContext, StatusContext } from '../../lib/cni/skeleton.js';
import type { CniDns, CniIpConfig, CniResult } from '../../lib/cni/types.js';
import { latestVersion } from '../../lib/cni/version.js';
import {
  allocationCandidates,
  describeRangeSet,
  freeAddressCount,
  rangeFor,
  requestedAddressProblem,
  type AddressRange,
  type Candidate,
  type RangeSet,
} from './allocator.js';
import { parseHostLocalConfig, requestedFromCniArgs, uniqueRequests, type HostLocalConfig, type RequestedIp } from './config.js';
import { formatAddress, formatIp, tryParseCidr, type IpAddress } from '../../lib/ip.js';
import { parseResolvConf } from './resolv-conf.js';
import { LeaseStore, leasesOf, type Lease } from './store.js';

// berth-host-local: one address per range set from local files, compatible with the reference
// host-local's on-disk state. Also called in-process by berth-bridge, so nothing here touches
// process-global state: everything comes from the context it is given.

function ipConfig(address: IpAddress, range: AddressRange): CniIpConfig {
  return { address: `${formatAddress(address)}/${range.subnet.prefixLength}`, gateway: formatIp(range.gateway, range.family) };
}

function readDns(path: string): CniDns {
  try {
    return parseResolvConf(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new BerthError('io', `ipam.resolvConf: cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

function sameAddress(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.value === b.value;
}

/** Give each range set at most one requested address; fail before anything is written. */
function assignRequests(conf: HostLocalConfig, requests: RequestedIp[]): (RequestedIp | undefined)[] {
  const left = [...requests];
  const perSet = conf.ranges.map((set) => {
    const at = left.findIndex((r) => rangeFor(set, r.address) !== undefined);
    return at < 0 ? undefined : left.splice(at, 1)[0];
  });
  for (const r of left) {
    const inSomeSet = conf.ranges.some((set) => rangeFor(set, r.address));
    const why = inSomeSet ? 'another requested address already takes its range set (one address per range set)' : `it is in no range of network "${conf.network}"`;
    throw new BerthError('invalid-argument', `${r.field}: cannot allocate requested address ${formatAddress(r.address)}: ${why}`);
  }
  perSet.forEach((r, i) => {
    const problem = r && requestedAddressProblem(conf.ranges[i] as RangeSet, r.address);
    if (r && problem) throw new BerthError('invalid-argument', `${r.field}: cannot allocate requested address: ${problem}`);
  });
  return perSet;
}

function takenError(conf: HostLocalConfig, request: RequestedIp, leases: Lease[]): BerthError {
  const holder = leases.find((l) => sameAddress(l.address, request.address));
  const by = holder ? ` by container ${holder.containerId}${holder.ifname ? ` (${holder.ifname})` : ''}` : '';
  return new BerthError('already-exists', `${request.field}: requested address ${formatAddress(request.address)} is already in use${by} in network "${conf.network}"`);
}

async function add(ctx: CommandContext<HostLocalConfig>): Promise<CniResult> {
  const { conf, containerId, ifname } = ctx;
  const requests = assignRequests(conf, uniqueRequests([...requestedFromCniArgs(ctx.args.get('IP')), ...conf.requestedIps]));
  const dns = conf.resolvConf ? readDns(conf.resolvConf) : undefined;
  const store = new LeaseStore(conf.dataDir, conf.network);
  store.prepare();
  const leases = store.list();
  const mine = leasesOf(leases, containerId, ifname);
  const reserved = leases.map((l) => l.address);
  const created: Candidate[] = [];
  const cursors: [number, IpAddress][] = [];
  const ips: CniIpConfig[] = [];
  try {
    conf.ranges.forEach((set, index) => {
      const requested = requests[index];
      // A repeated ADD for the same attachment gets the address it already holds (spec: no
      // second allocation for one attachment), unless it now asks for a different one.
      const held = mine.find((l) => rangeFor(set, l.address));
      if (held) {
        if (requested && !sameAddress(requested.address, held.address)) {
          throw new BerthError('already-exists', `${requested.field}: container ${containerId} (${ifname}) already holds ${formatAddress(held.address)} in range set ${index} of network "${conf.network}"; cannot also take ${formatAddress(requested.address)}`);
        }
        ips.push(ipConfig(held.address, rangeFor(set, held.address) as AddressRange));
        return;
      }
      let won: Candidate | undefined;
      const candidates = allocationCandidates({ set, reserved, cursor: store.lastReserved(index), requested: requested?.address });
      for (const candidate of candidates) {
        // Another process may have taken it since we listed: then try the next one.
        if (store.reserve(candidate.address, containerId, ifname)) {
          won = candidate;
          break;
        }
      }
      if (!won) {
        if (requested) throw takenError(conf, requested, store.list());
        throw new BerthError('resource-exhausted', `network "${conf.network}": no free address left in range set ${index} (${describeRangeSet(set)})`);
      }
      created.push(won);
      cursors.push([index, won.address]);
      ips.push(ipConfig(won.address, won.range));
    });
  } catch (err) {
    // A later range set failed: give back what this call took, so nothing leaks.
    for (const c of created) {
      try {
        store.release(c.address);
      } catch (releaseErr) {
        ctx.log.error({ address: formatAddress(c.address), err: errorMessage(releaseErr) }, 'could not roll back a lease');
      }
    }
    throw err;
  }
  for (const [index, address] of cursors) {
    try {
      store.recordLastReserved(index, address);
    } catch (err) {
      ctx.log.warn({ rangeSet: index, err: errorMessage(err) }, 'could not record the round-robin cursor');
    }
  }
  ctx.log.info({ ips: ips.map((i) => i.address) }, 'allocated');
  const result: CniResult = { cniVersion: latestVersion, ips };
  if (conf.routes.length > 0) result.routes = conf.routes.map((r) => ({ ...r }));
  if (dns) result.dns = dns;
  return result;
}

async function del(ctx: CommandContext<HostLocalConfig>): Promise<void> {
  const { conf, containerId, ifname } = ctx;
  // DEL leaves no trace for an unknown container: it does not even create the directory.
  const store = new LeaseStore(conf.dataDir, conf.network);
  if (!store.exists()) return;
  const released = store.releaseAttachment(containerId, ifname);
  if (released.length > 0) ctx.log.info({ ips: released.map((l) => formatAddress(l.address)) }, 'released');
}

async function check(ctx: CommandContext<HostLocalConfig>): Promise<void> {
  const { conf, containerId, ifname } = ctx;
  const store = new LeaseStore(conf.dataDir, conf.network);
  const mine = leasesOf(store.list(), containerId, ifname);
  let ours = 0;
  (ctx.prevResult?.ips ?? []).forEach((ip, i) => {
    const cidr = tryParseCidr(ip.address);
    if (!cidr) throw new BerthError('invalid-config', `prevResult.ips[${i}].address: expected a CIDR, got ${JSON.stringify(ip.address)}`);
    // Addresses outside every range came from someone else; they are not ours to check.
    if (!conf.ranges.some((set) => rangeFor(set, cidr.address))) return;
    ours++;
    if (!mine.some((l) => sameAddress(l.address, cidr.address))) {
      throw new BerthError('failed-precondition', `prevResult.ips[${i}]: ${formatAddress(cidr.address)} is not leased to container ${containerId} (${ifname}) in network "${conf.network}"`);
    }
  });
  if (ours === 0 && mine.length === 0) {
    throw new BerthError('failed-precondition', `no address is leased to container ${containerId} (${ifname}) in network "${conf.network}"`);
  }
}

async function gc(ctx: GcContext<HostLocalConfig>): Promise<void> {
  const { conf } = ctx;
  const store = new LeaseStore(conf.dataDir, conf.network);
  if (!store.exists()) return;
  const valid = new Set(ctx.validAttachments.map((a) => `${a.containerID}\n${a.ifname}`));
  const validIds = new Set(ctx.validAttachments.map((a) => a.containerID));
  const failures: string[] = [];
  const released: string[] = [];
  for (const lease of store.list()) {
    // An old ID-only lease stays while any attachment of that container is valid.
    const keep = lease.ifname === undefined ? validIds.has(lease.containerId) : valid.has(`${lease.containerId}\n${lease.ifname}`);
    if (keep) continue;
    try {
      if (store.release(lease.address)) released.push(formatAddress(lease.address));
    } catch (err) {
      failures.push(`${formatAddress(lease.address)}: ${errorMessage(err)}`);
    }
  }
  // The runtime never runs GC alongside ADD or DEL, so a temp file now is a crash's leftover.
  try {
    store.removeStaleTempFiles();
  } catch (err) {
    failures.push(`temp files: ${errorMessage(err)}`);
  }
  if (released.length > 0) ctx.log.info({ ips: released }, 'garbage-collected');
  if (failures.length > 0) {
    throw new BerthError('io', `GC of network "${conf.network}": could not release ${failures.length} lease(s): ${failures.join('; ')}`);
  }
}

async function status(ctx: StatusContext<HostLocalConfig>): Promise<void> {
  const { conf } = ctx;
  const store = new LeaseStore(conf.dataDir, conf.network);
  const writable = store.writable();
  if (!writable.ok) {
    throw new BerthError('not-available', `ipam.dataDir: cannot write leases under ${writable.path}: ${writable.reason}`);
  }
  const reserved = store.list().map((l) => l.address);
  conf.ranges.forEach((set, index) => {
    if (freeAddressCount(set, reserved) <= 0n) {
      throw new BerthError('not-available', `network "${conf.network}": no free address left in range set ${index} (${describeRangeSet(set)})`);
    }
  });
}

export const hostLocalPlugin: CniPlugin<HostLocalConfig> = {
  name: 'berth-host-local',
  about: 'host-local IPAM: leases addresses from configured ranges, one file per address (reference-compatible layout)',
  parseConfig: parseHostLocalConfig,
  add,
  del,
  check,
  gc,
  status,
};

export type { HostLocalConfig } from './config.js';
