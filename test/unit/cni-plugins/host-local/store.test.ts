import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatAddress, parseIp, type IpAddress } from '../../../../lib/ip.js';
import { leaseContent, leasesOf, LeaseStore, parseLeaseContent, type Lease } from '../../../../cni-plugins/host-local/store.js';

function ip(text: string): IpAddress {
  const parsed = parseIp(text);
  if (!parsed) throw new Error(`test setup: ${text} is not an address`);
  return parsed;
}

function summary(leases: Lease[]) {
  return leases.map((l) => `${formatAddress(l.address)}=${l.containerId}/${l.ifname ?? '-'}`).sort();
}

describe('lease store: file format', () => {
  it('writes "<containerID>\\r\\n<ifname>" like the reference', () => {
    expect(leaseContent('abc', 'eth0')).toBe('abc\r\neth0');
  });

  it('reads new-style files and old ID-only files, ignoring surrounding whitespace', () => {
    expect(parseLeaseContent('abc\r\neth0')).toEqual({ containerId: 'abc', ifname: 'eth0' });
    expect(parseLeaseContent('abc\r\neth0\n')).toEqual({ containerId: 'abc', ifname: 'eth0' });
    expect(parseLeaseContent('abc')).toEqual({ containerId: 'abc', ifname: undefined });
    expect(parseLeaseContent('abc\n')).toEqual({ containerId: 'abc', ifname: undefined });
  });

  it('matches an attachment by ID and ifname, falling back to ID-only files only when none match', () => {
    const leases: Lease[] = [
      { address: ip('10.0.0.2'), containerId: 'a', ifname: 'eth0' },
      { address: ip('10.0.0.3'), containerId: 'a', ifname: undefined },
      { address: ip('10.0.0.4'), containerId: 'a', ifname: 'eth1' },
      { address: ip('10.0.0.5'), containerId: 'b', ifname: 'eth0' },
    ];
    expect(summary(leasesOf(leases, 'a', 'eth0'))).toEqual(['10.0.0.2=a/eth0']);
    expect(summary(leasesOf(leases, 'a', 'eth9'))).toEqual(['10.0.0.3=a/-']);
    expect(leasesOf(leases, 'c', 'eth0')).toEqual([]);
  });
});

describe('lease store: on disk', () => {
  let dataDir = '';
  let store: LeaseStore;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'berth-ipam-store-'));
    store = new LeaseStore(dataDir, 'podnet');
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('keeps each network in <dataDir>/<name> with the reference lock file', () => {
    expect(store.exists()).toBe(false);
    store.prepare();
    expect(store.dir).toBe(join(dataDir, 'podnet'));
    expect(readdirSync(store.dir)).toEqual(['lock']);
    store.prepare();
    expect(readdirSync(store.dir)).toEqual(['lock']);
  });

  it('reserves an address once, as a file named after it, and lists it back', () => {
    store.prepare();
    expect(store.reserve(ip('10.0.0.2'), 'c1', 'eth0')).toBe(true);
    expect(store.reserve(ip('10.0.0.2'), 'c2', 'eth0')).toBe(false);
    expect(readFileSync(join(store.dir, '10.0.0.2'), 'utf8')).toBe('c1\r\neth0');
    expect(summary(store.list())).toEqual(['10.0.0.2=c1/eth0']);
  });

  it('names IPv6 leases the way Go prints the address', () => {
    store.prepare();
    store.reserve(ip('FD00:0009:0:0:0:0:0:0002'), 'c1', 'eth0');
    expect(readdirSync(store.dir).sort()).toEqual(['fd00:9::2', 'lock']);
    expect(summary(store.list())).toEqual(['fd00:9::2=c1/eth0']);
  });

  it('lists only lease files: not the lock, cursors, temp files, directories or non-canonical names', () => {
    store.prepare();
    store.reserve(ip('10.0.0.2'), 'c1', 'eth0');
    store.recordLastReserved(0, ip('10.0.0.2'));
    writeFileSync(join(store.dir, '.10.0.0.3.123.abc.tmp'), 'c2\r\neth0');
    writeFileSync(join(store.dir, 'fd00:0::3'), 'c3\r\neth0');
    mkdirSync(join(store.dir, '10.0.0.9'));
    writeFileSync(join(store.dir, 'notes.txt'), 'hello');
    expect(summary(store.list())).toEqual(['10.0.0.2=c1/eth0']);
  });

  it('reads leases written in the old ID-only format', () => {
    store.prepare();
    writeFileSync(join(store.dir, '10.0.0.7'), 'legacy-id');
    expect(summary(store.list())).toEqual(['10.0.0.7=legacy-id/-']);
  });

  it('an absent network directory has no leases and no cursor', () => {
    expect(store.list()).toEqual([]);
    expect(store.lastReserved(0)).toBeUndefined();
    expect(store.releaseAttachment('c1', 'eth0')).toEqual([]);
    expect(existsSync(store.dir)).toBe(false);
  });

  it('records and reads the round-robin cursor per range set, tolerating junk', () => {
    store.prepare();
    store.recordLastReserved(0, ip('10.0.0.5'));
    store.recordLastReserved(1, ip('fd00::5'));
    expect(readFileSync(join(store.dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.0.0.5');
    expect(formatAddress(store.lastReserved(1)!)).toBe('fd00::5');
    writeFileSync(join(store.dir, 'last_reserved_ip.2'), 'garbage');
    expect(store.lastReserved(2)).toBeUndefined();
  });

  it('releases one attachment, leaving the other interfaces of the same container', () => {
    store.prepare();
    store.reserve(ip('10.0.0.2'), 'c1', 'eth0');
    store.reserve(ip('fd00::2'), 'c1', 'eth0');
    store.reserve(ip('10.0.0.3'), 'c1', 'eth1');
    store.reserve(ip('10.0.0.4'), 'c2', 'eth0');
    expect(summary(store.releaseAttachment('c1', 'eth0'))).toEqual(['10.0.0.2=c1/eth0', 'fd00::2=c1/eth0']);
    expect(summary(store.list())).toEqual(['10.0.0.3=c1/eth1', '10.0.0.4=c2/eth0']);
    expect(store.releaseAttachment('c1', 'eth0')).toEqual([]);
  });

  it('releases an old ID-only lease of the container when no new-style lease matches', () => {
    store.prepare();
    writeFileSync(join(store.dir, '10.0.0.7'), 'legacy-id');
    expect(summary(store.releaseAttachment('legacy-id', 'eth0'))).toEqual(['10.0.0.7=legacy-id/-']);
    expect(store.list()).toEqual([]);
  });

  it('removes leftover temp files and nothing else', () => {
    store.prepare();
    store.reserve(ip('10.0.0.2'), 'c1', 'eth0');
    writeFileSync(join(store.dir, '.10.0.0.3.123.abc.tmp'), 'c2\r\neth0');
    expect(store.removeStaleTempFiles()).toEqual(['.10.0.0.3.123.abc.tmp']);
    expect(readdirSync(store.dir).sort()).toEqual(['10.0.0.2', 'lock']);
  });

  it('reports whether leases can be written, checking the nearest existing directory', () => {
    expect(store.writable()).toEqual({ ok: true });
    writeFileSync(join(dataDir, 'plain-file'), '');
    const underFile = new LeaseStore(join(dataDir, 'plain-file', 'x'), 'podnet');
    expect(underFile.writable()).toEqual({ ok: false, path: join(dataDir, 'plain-file'), reason: 'not a directory' });
    const blocked = join(dataDir, 'ro');
    mkdirSync(blocked, { mode: 0o555 });
    chmodSync(blocked, 0o555);
    const inside = new LeaseStore(join(blocked, 'deeper'), 'podnet');
    const verdict = inside.writable();
    // root ignores permission bits, so only an unprivileged run can see the refusal.
    if (process.getuid?.() === 0) expect(verdict).toEqual({ ok: true });
    else expect(verdict).toMatchObject({ ok: false, path: blocked });
  });
});
