import { describe, expect, it } from 'vitest';
import {
  allocatableCount,
  allocationCandidates,
  candidateOrder,
  freeAddressCount,
  isExcluded,
  rangeFor,
  rangesOverlap,
  requestedAddressProblem,
  type RangeSet,
} from '../../../../cni-plugins/host-local/allocator.js';
import { parseHostLocalConfig } from '../../../../cni-plugins/host-local/config.js';
import { formatAddress, parseIp, type IpAddress } from '../../../../lib/ip.js';

// Range sets are built through the config parser, so they carry the same defaults as in use.
function rangeSet(...ranges: Record<string, string>[]): RangeSet {
  const conf = parseHostLocalConfig({ cniVersion: '1.0.0', name: 'n', type: 'host-local', ipam: { ranges: [ranges] } }, 'ADD');
  return conf.ranges[0] as RangeSet;
}

function ip(text: string): IpAddress {
  const parsed = parseIp(text);
  if (!parsed) throw new Error(`test setup: ${text} is not an address`);
  return parsed;
}

function order(set: RangeSet, cursor?: string): string[] {
  return [...candidateOrder(set, cursor ? ip(cursor) : undefined)].map((c) => formatAddress(c.address));
}

function candidates(set: RangeSet, opts: { reserved?: string[]; cursor?: string; requested?: string } = {}): string[] {
  const found = allocationCandidates({
    set,
    reserved: (opts.reserved ?? []).map(ip),
    cursor: opts.cursor ? ip(opts.cursor) : undefined,
    requested: opts.requested ? ip(opts.requested) : undefined,
  });
  return [...found].map((c) => formatAddress(c.address));
}

describe('allocator: candidate order', () => {
  it('starts at the range start and skips the default gateway .1, so the first address is .2', () => {
    expect(order(rangeSet({ subnet: '10.0.0.0/29' }))).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  });

  it('never offers the network, gateway or IPv4 broadcast address even when the range includes them', () => {
    const set = rangeSet({ subnet: '10.0.0.0/29', rangeStart: '10.0.0.0', rangeEnd: '10.0.0.7', gateway: '10.0.0.5' });
    expect(order(set)).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.6']);
  });

  it('offers the last IPv6 address (there is no broadcast) but not the subnet-router address', () => {
    const set = rangeSet({ subnet: 'fd00::/126', rangeStart: 'fd00::' });
    expect(order(set)).toEqual(['fd00::2', 'fd00::3']);
  });

  it('continues round-robin right after the last reserved address and ends with it', () => {
    expect(order(rangeSet({ subnet: '10.0.0.0/29' }), '10.0.0.4')).toEqual(['10.0.0.5', '10.0.0.6', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
  });

  it('wraps to the range start when the last reserved address is the range end', () => {
    expect(order(rangeSet({ subnet: '10.0.0.0/29' }), '10.0.0.6')).toEqual(['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
  });

  it('starts from the beginning when the cursor is outside the set (e.g. the ranges changed)', () => {
    expect(order(rangeSet({ subnet: '10.0.0.0/29' }), '192.168.0.9')[0]).toBe('10.0.0.2');
    expect(order(rangeSet({ subnet: '10.0.0.0/29' }), 'fd00::9')[0]).toBe('10.0.0.2');
  });

  it('walks the ranges of a set in turn, from the cursor range onwards and back around', () => {
    const set = rangeSet({ subnet: '10.0.0.0/30' }, { subnet: '10.0.1.0/30' }, { subnet: '10.0.2.0/30' });
    expect(order(set)).toEqual(['10.0.0.2', '10.0.1.2', '10.0.2.2']);
    expect(order(set, '10.0.1.2')).toEqual(['10.0.2.2', '10.0.0.2', '10.0.1.2']);
  });

  it('visits every allocatable address exactly once from any cursor position', () => {
    const set = rangeSet(
      { subnet: '10.0.0.0/28', rangeStart: '10.0.0.3', rangeEnd: '10.0.0.9', gateway: '10.0.0.5' },
      { subnet: '10.0.1.0/29', rangeStart: '10.0.1.0', rangeEnd: '10.0.1.7' },
    );
    const all = order(set);
    expect(all).toEqual(['10.0.0.3', '10.0.0.4', '10.0.0.6', '10.0.0.7', '10.0.0.8', '10.0.0.9', '10.0.1.2', '10.0.1.3', '10.0.1.4', '10.0.1.5', '10.0.1.6']);
    const cursors = ['10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.0.7', '10.0.0.8', '10.0.0.9', '10.0.1.0', '10.0.1.1', '10.0.1.2', '10.0.1.6', '10.0.1.7'];
    for (const cursor of cursors) {
      const seq = order(set, cursor);
      expect([...seq].sort(), cursor).toEqual([...all].sort());
      // The sequence is the full order rotated to start right after the cursor.
      const rotation = all.indexOf(seq[0] as string);
      expect(seq, cursor).toEqual([...all.slice(rotation), ...all.slice(0, rotation)]);
      expect(ip(seq[0] as string).value > ip(cursor).value || seq[0] === all[0], cursor).toBe(true);
    }
  });

  it('is lazy, so a /64 gives its first candidates at once', () => {
    const gen = candidateOrder(rangeSet({ subnet: 'fd00:1::/64' }), ip('fd00:1::ffff:ffff:ffff:fff0'));
    const firstThree = [gen.next(), gen.next(), gen.next()].map((r) => (r.value ? formatAddress(r.value.address) : ''));
    expect(firstThree).toEqual(['fd00:1::ffff:ffff:ffff:fff1', 'fd00:1::ffff:ffff:ffff:fff2', 'fd00:1::ffff:ffff:ffff:fff3']);
  });
});

describe('allocator: reserved and requested addresses', () => {
  const set = rangeSet({ subnet: '10.0.0.0/29' });

  it('leaves out reserved addresses and keeps the round-robin order', () => {
    expect(candidates(set, { reserved: ['10.0.0.5', '10.0.0.2'], cursor: '10.0.0.4' })).toEqual(['10.0.0.6', '10.0.0.3', '10.0.0.4']);
  });

  it('ignores reserved addresses of the other family that share the same number', () => {
    expect(candidates(set, { reserved: ['::a00:2'] })[0]).toBe('10.0.0.2');
  });

  it('has no candidate when every address is reserved', () => {
    expect(candidates(set, { reserved: ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'] })).toEqual([]);
  });

  it('offers a free requested address as the only candidate, whatever the cursor', () => {
    expect(candidates(set, { requested: '10.0.0.5', cursor: '10.0.0.2' })).toEqual(['10.0.0.5']);
  });

  it('offers nothing for a requested address that is reserved, outside the set, or the gateway', () => {
    expect(candidates(set, { requested: '10.0.0.5', reserved: ['10.0.0.5'] })).toEqual([]);
    expect(candidates(set, { requested: '10.0.9.5' })).toEqual([]);
    expect(candidates(set, { requested: '10.0.0.1' })).toEqual([]);
  });

  it('explains why a requested address cannot be given', () => {
    expect(requestedAddressProblem(set, ip('10.0.0.1'))).toBe('10.0.0.1 is the gateway of 10.0.0.0/29 (10.0.0.1-10.0.0.6)');
    expect(requestedAddressProblem(set, ip('10.0.0.7'))).toBe('10.0.0.7 is not in range set 10.0.0.0/29 (10.0.0.1-10.0.0.6)');
    const wide = rangeSet({ subnet: '10.0.0.0/29', rangeStart: '10.0.0.0', rangeEnd: '10.0.0.7' });
    expect(requestedAddressProblem(wide, ip('10.0.0.7'))).toMatch(/network or broadcast/);
    expect(requestedAddressProblem(set, ip('10.0.0.3'))).toBeUndefined();
  });
});

describe('allocator: counting and geometry', () => {
  it('counts allocatable addresses without gateway, network and broadcast', () => {
    expect(allocatableCount(rangeSet({ subnet: '10.0.0.0/24' })[0]!)).toBe(253n);
    expect(allocatableCount(rangeSet({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.0', rangeEnd: '10.0.0.255' })[0]!)).toBe(253n);
    expect(allocatableCount(rangeSet({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.19' })[0]!)).toBe(10n);
    expect(allocatableCount(rangeSet({ subnet: 'fd00::/120' })[0]!)).toBe(254n);
  });

  it('counts free addresses, ignoring duplicates, excluded and foreign reservations', () => {
    const set = rangeSet({ subnet: '10.0.0.0/29' }, { subnet: '10.0.1.0/30' });
    expect(freeAddressCount(set, [])).toBe(6n);
    expect(freeAddressCount(set, ['10.0.0.2', '10.0.0.2', '10.0.1.2', '10.0.0.1', '192.168.1.1', 'fd00::2'].map(ip))).toBe(4n);
    expect(freeAddressCount(set, ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.1.2'].map(ip))).toBe(0n);
    expect(freeAddressCount(rangeSet({ subnet: 'fd00::/64' }), [ip('fd00::2')])).toBe((1n << 64n) - 3n);
  });

  it('finds the range of an address and marks excluded ones', () => {
    const set = rangeSet({ subnet: '10.0.0.0/29' }, { subnet: '10.0.1.0/29' });
    expect(rangeFor(set, ip('10.0.1.3'))?.field).toBe('ipam.ranges[0][1]');
    expect(rangeFor(set, ip('10.0.2.3'))).toBeUndefined();
    expect(isExcluded(set[0]!, ip('10.0.0.7').value)).toBe(true);
    expect(isExcluded(set[0]!, ip('10.0.0.6').value)).toBe(false);
  });

  it('sees overlap only between ranges of one family that share an address', () => {
    const [a, b] = rangeSet({ subnet: '10.0.0.0/29' }, { subnet: '10.0.1.0/29' });
    expect(rangesOverlap(a!, b!)).toBe(false);
    const [c] = rangeSet({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.6', rangeEnd: '10.0.0.6' });
    expect(rangesOverlap(a!, c!)).toBe(true);
    const [v6] = rangeSet({ subnet: '::/120' });
    expect(rangesOverlap(a!, v6!)).toBe(false);
  });
});
