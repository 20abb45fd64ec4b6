import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../../cri-shim/config.js';
import { chainIds } from '../../../../cri-shim/containerd/snapshots.js';
import { runcOptionsAny } from '../../../../cri-shim/containerd/tasks.js';
import { parseArgs } from '../../../../cri-shim/main-args.js';
import { signalNumber } from '../../../../cri-shim/server/container-create.js';
import { parseNetDev } from '../../../../cri-shim/server/stats.js';
import { readRootfsFile } from '../../../../cri-shim/server/image-files.js';
import { hostsFor, resolvConfFor } from '../../../../cri-shim/server/sandbox-files.js';
import { imageUser } from '../../../../cri-shim/store/image-store.js';
import { NameIndex } from '../../../../cri-shim/store/name-index.js';
import { RecordStore } from '../../../../cri-shim/store/records.js';
import { NamespaceMode, PodSandboxConfig } from '../../../../proto/gen/runtime/v1/api.js';

const tmp: string[] = [];
afterEach(() => {
  for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('berth-cri configuration', () => {
  it('has defaults a node operator expects', () => {
    const c = parseConfig({});
    expect(c).toMatchObject({ listen: 'unix:///run/berth/cri.sock', namespace: 'berth.io', cgroupDriver: 'cgroupfs', cniConfDir: '/etc/cni/net.d', cniBinDir: ['/opt/cni/bin'] });
  });

  it('names the offending key of a bad file', () => {
    expect(() => parseConfig({ cgroupDriver: 'cgroupv3' }, '/etc/berth/cri.yaml')).toThrow(/\/etc\/berth\/cri.yaml: cgroupDriver/);
    expect(() => parseConfig({ runtimeHandlers: { crun: { binary: '' } } }, 'f')).toThrow(/runtimeHandlers.crun.binary/);
    expect(() => parseConfig({ bogus: 1 }, 'f')).toThrow(/bogus/);
    expect(() => parseConfig({ defaultRuntimeHandler: 'kata' }, 'f')).toThrow(/defaultRuntimeHandler: "kata" is not in runtimeHandlers/);
  });

  it('merges flags over the file, with runtime handlers as NAME=BINARY', () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-cfg-'));
    tmp.push(dir);
    writeFileSync(join(dir, 'cri.yaml'), 'cgroupDriver: systemd\nsandboxImage: example.test/pause:1\nlogLevel: warn\n');
    const c = parseArgs(['--config', join(dir, 'cri.yaml'), '--log-level', 'debug', '--runtime-handler', 'crun=/usr/bin/crun', '--cni-bin-dir', '/a:/b']);
    expect(c).toMatchObject({ cgroupDriver: 'systemd', sandboxImage: 'example.test/pause:1', logLevel: 'debug', cniBinDir: ['/a', '/b'] });
    expect(c !== 'help' && c !== 'version' && c.runtimeHandlers).toEqual({ runc: { binary: 'runc' }, crun: { binary: '/usr/bin/crun' } });
    expect(() => parseArgs(['--nope', 'x'])).toThrow(/unknown flag --nope/);
    expect(() => parseArgs(['--root'])).toThrow(/--root: a value is required/);
    writeFileSync(join(dir, 'bad.yaml'), 'a: [1,');
    expect(() => parseArgs(['--config', join(dir, 'bad.yaml')])).toThrow(/not valid YAML/);
  });
});

describe('sandbox files', () => {
  const pod = (over: Partial<PodSandboxConfig> = {}): PodSandboxConfig => PodSandboxConfig.fromPartial({ metadata: { name: 'p', namespace: 'n', uid: 'u', attempt: 0 }, ...over });

  it('writes resolv.conf from DNSConfig, else keeps the host file', () => {
    const dns = { servers: ['10.96.0.10', '10.96.0.11'], searches: ['ns.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5', 'edns0'] };
    expect(resolvConfFor(pod({ dnsConfig: dns }), 'nameserver 1.1.1.1\n')).toBe('search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5 edns0\n');
    expect(resolvConfFor(pod(), 'nameserver 1.1.1.1\n')).toBe('nameserver 1.1.1.1\n');
  });

  it('gives a pod its own /etc/hosts, and a host-network pod the host one', () => {
    expect(hostsFor(pod(), 'HOST')).toContain('127.0.0.1\tlocalhost');
    const hostNet = pod({ linux: { cgroupParent: '', sysctls: {}, securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: 0, ipc: 0, targetId: '', usernsOptions: undefined }, selinuxOptions: undefined, runAsUser: undefined, runAsGroup: undefined, readonlyRootfs: false, supplementalGroups: [], supplementalGroupsPolicy: 0, privileged: false, seccomp: undefined, apparmor: undefined, seccompProfilePath: '' }, overhead: undefined, resources: undefined } });
    expect(hostsFor(hostNet, 'HOST')).toBe('HOST');
  });
});

describe('reading image files from snapshot layers', () => {
  function layers(): { upper: string; lower1: string; lower2: string } {
    const root = mkdtempSync(join(tmpdir(), 'berth-layers-'));
    tmp.push(root);
    const dirs = { upper: join(root, 'u'), lower1: join(root, 'l1'), lower2: join(root, 'l2') };
    for (const d of Object.values(dirs)) mkdirSync(join(d, 'etc'), { recursive: true });
    return dirs;
  }
  const overlay = (d: { upper: string; lower1: string; lower2: string }) => [{ type: 'overlay', source: 'overlay', target: '', options: [`upperdir=${d.upper}`, `lowerdir=${d.lower1}:${d.lower2}`, 'workdir=/w'] }];

  it('finds the topmost copy of a file', () => {
    const d = layers();
    writeFileSync(join(d.lower2, 'etc', 'passwd'), 'old');
    writeFileSync(join(d.lower1, 'etc', 'passwd'), 'new');
    expect(readRootfsFile(overlay(d), '/etc/passwd')).toBe('new');
    expect(readRootfsFile(overlay(d), '/etc/group')).toBeUndefined();
  });

  it('honours a whiteout of the file or of its directory', () => {
    const d = layers();
    writeFileSync(join(d.lower2, 'etc', 'passwd'), 'deleted above');
    writeFileSync(join(d.lower1, 'etc', '.wh.passwd'), '');
    expect(readRootfsFile(overlay(d), '/etc/passwd')).toBeUndefined();
    const e = layers();
    writeFileSync(join(e.lower2, 'etc', 'group'), 'x');
    writeFileSync(join(e.lower1, '.wh.etc'), '');
    expect(readRootfsFile(overlay(e), '/etc/group')).toBeUndefined();
  });

  it('reads a single-layer bind snapshot and gives up on other mount kinds', () => {
    const d = layers();
    writeFileSync(join(d.upper, 'etc', 'passwd'), 'bind');
    expect(readRootfsFile([{ type: 'bind', source: d.upper, target: '', options: ['rbind'] }], '/etc/passwd')).toBe('bind');
    expect(readRootfsFile([{ type: 'zfs', source: 'x', target: '', options: [] }], '/etc/passwd')).toBeUndefined();
  });
});

describe('small pieces', () => {
  it('computes OCI chain IDs', () => {
    const a = `sha256:${'a'.repeat(64)}`;
    const b = `sha256:${'b'.repeat(64)}`;
    const [c0, c1] = chainIds([a, b]);
    expect(c0).toBe(a);
    // sha256("sha256:aaa… sha256:bbb…")
    expect(c1).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(c1).not.toBe(b);
    expect(chainIds([a, b])).toEqual([c0, c1]);
  });

  it('maps stop signal names and numbers', () => {
    expect(signalNumber('')).toBe(15);
    expect(signalNumber('SIGQUIT')).toBe(3);
    expect(signalNumber('int')).toBe(2);
    expect(signalNumber('9')).toBe(9);
    expect(() => signalNumber('SIGNOPE')).toThrow(/StopSignal "SIGNOPE"/);
  });

  it('reads uid or username from an image User', () => {
    expect(imageUser('')).toEqual({ username: '' });
    expect(imageUser('1000:1000')).toEqual({ uid: 1000n, username: '' });
    expect(imageUser('www-data:www')).toEqual({ username: 'www-data' });
  });

  it('encodes runc options with the binary name, root and systemd cgroups', () => {
    const any = runcOptionsAny({ binaryName: 'crun', root: '/run/crun', systemdCgroup: true });
    expect(any.typeUrl).toBe('containerd.runc.v1.Options');
    // field 6 "crun", field 7 "/run/crun", field 9 true
    expect(Buffer.from(any.value).toString('hex')).toBe(`3204${Buffer.from('crun').toString('hex')}3a09${Buffer.from('/run/crun').toString('hex')}4801`);
  });

  it('reserves a name for one ID at a time', () => {
    const names = new NameIndex();
    names.reserve('a', '1', 'pod');
    names.reserve('a', '1', 'pod');
    expect(() => names.reserve('a', '2', 'pod')).toThrow(/"a" is reserved for 1/);
    names.release('a', '2');
    expect(names.holder('a')).toBe('1');
    names.release('a', '1');
    names.reserve('a', '2', 'pod');
  });

  it('finds records by ID or unique prefix', () => {
    const store = new RecordStore<{ id: string; name: string }>('container');
    store.add({ id: 'abc123', name: 'x' });
    store.add({ id: 'abd456', name: 'y' });
    expect(store.find('abc')?.id).toBe('abc123');
    expect(store.find('ab')).toBeUndefined();
    expect(store.find('')).toBeUndefined();
    expect(store.find('abd456')?.name).toBe('y');
  });

  it('reads interface counters from /proc/<pid>/net/dev', () => {
    const text = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0',
      '  eth0: 1234567    1000    3    0    0     0          0         0   765432     900    5    0    0     0       0          0',
    ].join('\n');
    expect(parseNetDev(text)).toEqual([
      { name: 'lo', rxBytes: 120n, rxErrors: 0n, txBytes: 120n, txErrors: 0n },
      { name: 'eth0', rxBytes: 1234567n, rxErrors: 3n, txBytes: 765432n, txErrors: 5n },
    ]);
    expect(parseNetDev('')).toEqual([]);
  });
});
