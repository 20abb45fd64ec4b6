import { readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { callerMismatch, inspectProcess, ownView, type ProcessView } from '../../../../cni-plugins/cnid/peer.js';
import type { CallerContext } from '../../../../lib/cni/cnid-protocol.js';

const own: ProcessView = {
  uid: 0,
  gid: 0,
  namespaces: { user: 'user:[1]', mnt: 'mnt:[2]', pid: 'pid:[3]', net: 'net:[4]', uts: 'uts:[5]', ipc: 'ipc:[6]', cgroup: 'cgroup:[7]', time: 'time:[8]' },
  root: '/',
  cwd: '/',
  rootId: '2049:2',
  cwdId: '2049:2',
  umask: 0o022,
  capEff: '000001ffffffffff',
};

/** What a caller standing where the daemon stands says about itself. */
const truthful = (view: ProcessView): CallerContext => ({ cwd: view.cwd!, netns: view.namespaces.net!, mntns: view.namespaces.mnt!, euid: view.uid, umask: view.umask! });

const peerWith = (over: Partial<ProcessView>): ProcessView => ({ ...own, ...over, namespaces: { ...own.namespaces, ...over.namespaces } });

describe('callerMismatch: the caller as the kernel shows it', () => {
  it('serves a caller that tells the truth and stands where the daemon stands', () => {
    expect(callerMismatch(truthful(own), own, own)).toBeUndefined();
  });

  it.each([
    ['network namespace', { netns: 'net:[4]' }, { namespaces: { net: 'net:[99]' } }, 'caller claims network namespace net:[4] but runs in net:[99]'],
    ['mount namespace', { mntns: 'mnt:[2]' }, { namespaces: { mnt: 'mnt:[99]' } }, 'caller claims mount namespace mnt:[2] but runs in mnt:[99]'],
    ['euid', { euid: 0 }, { uid: 1000 }, 'caller claims euid 0 but connected with euid 1000'],
    ['working directory', { cwd: '/' }, { cwd: '/tmp' }, 'caller claims working directory / but works in /tmp'],
    ['umask', { umask: 0o022 }, { umask: 0o077 }, 'caller claims umask 22 but has umask 77'],
  ] as const)('declines a caller that lies about its %s', (_what, claim, kernel, reason) => {
    // The claim is the daemon's own; the kernel says otherwise.
    expect(callerMismatch({ ...truthful(own), ...claim }, peerWith(kernel as Partial<ProcessView>), own)).toBe(reason);
  });

  it('declines a caller whose namespace cannot be read, even when it claims the right one', () => {
    const peer = peerWith({});
    delete peer.namespaces.net;
    expect(callerMismatch(truthful(own), peer, own)).toBe('caller claims network namespace net:[4] but runs in an unreadable one');
  });

  it.each([
    ['user', 'caller user namespace user:[9] differs from the daemon\'s user:[1]'],
    ['pid', 'caller pid namespace pid:[9] differs from the daemon\'s pid:[3]'],
    ['uts', 'caller UTS namespace uts:[9] differs from the daemon\'s uts:[5]'],
    ['ipc', 'caller IPC namespace ipc:[9] differs from the daemon\'s ipc:[6]'],
    ['cgroup', 'caller cgroup namespace cgroup:[9] differs from the daemon\'s cgroup:[7]'],
    ['time', 'caller time namespace time:[9] differs from the daemon\'s time:[8]'],
  ])('declines a truthful caller in another %s namespace', (name, reason) => {
    const peer = peerWith({ namespaces: { [name]: `${name}:[9]` } });
    expect(callerMismatch(truthful(peer), peer, own)).toBe(reason);
  });

  it('declines a truthful caller in another network or mount namespace', () => {
    const net = peerWith({ namespaces: { net: 'net:[9]' } });
    expect(callerMismatch(truthful(net), net, own)).toBe('caller network namespace net:[9] differs from the daemon\'s net:[4]');
    const mnt = peerWith({ namespaces: { mnt: 'mnt:[9]' } });
    expect(callerMismatch(truthful(mnt), mnt, own)).toBe('caller mount namespace mnt:[9] differs from the daemon\'s mnt:[2]');
  });

  it('skips a namespace type the kernel does not have', () => {
    const { time: _, ...namespaces } = own.namespaces;
    const old = { ...own, namespaces };
    expect(callerMismatch(truthful(old), old, old)).toBeUndefined();
  });

  it.each([
    ['euid', { uid: 1000 }, 'caller euid 1000 differs from the daemon\'s 0'],
    ['egid', { gid: 1000 }, 'caller egid 1000 differs from the daemon\'s 0'],
    ['root (a chroot)', { root: '/srv/jail', rootId: undefined }, 'caller root directory /srv/jail differs from the daemon\'s /'],
    ['root directory behind the same path', { rootId: '2049:77' }, 'caller root directory / (2049:77) is not the daemon\'s (2049:2)'],
    ['working directory', { cwd: '/tmp', cwdId: undefined }, 'caller working directory /tmp differs from the daemon\'s /'],
    ['working directory behind the same path (mounted over)', { cwdId: '2050:2' }, 'caller working directory / (2050:2) is not the daemon\'s (2049:2)'],
    ['umask', { umask: 0o077 }, 'caller umask 77 differs from the daemon\'s 22'],
    ['capabilities', { capEff: '0000000000000000' }, 'caller effective capabilities 0000000000000000 differ from the daemon\'s 000001ffffffffff'],
  ] as const)('declines a truthful caller with another %s', (_what, over, reason) => {
    const peer = peerWith(over as Partial<ProcessView>);
    expect(callerMismatch(truthful(peer), peer, own)).toBe(reason);
  });
});

describe('inspectProcess', () => {
  it('reads this process as the daemon reads itself', () => {
    const me = ownView();
    expect(me.namespaces.net).toBe(readlinkSync('/proc/self/ns/net'));
    expect(me.namespaces.mnt).toBe(readlinkSync('/proc/self/ns/mnt'));
    expect(me.cwd).toBe(process.cwd());
    expect(me.root).toBe('/');
    expect(me.uid).toBe(process.geteuid!());
    expect(me.umask).toBe(process.umask());
    expect(me.capEff).toMatch(/^[0-9a-f]{16}$/);
    expect(me.cwdId).toMatch(/^\d+:\d+$/);
    expect(callerMismatch(truthful(me), me, me)).toBeUndefined();
  });

  it('stops reading at a network or mount namespace other than the daemon\'s, which declines the caller', () => {
    const me = ownView();
    const daemon = { ...me, namespaces: { ...me.namespaces, net: 'net:[1]' } };
    const cut = inspectProcess('/proc/self', me, daemon);
    expect(cut).toEqual({ uid: me.uid, gid: me.gid, namespaces: { net: me.namespaces.net } });
    expect(callerMismatch(truthful(me), cut, daemon)).toBe(`caller network namespace ${me.namespaces.net} differs from the daemon's net:[1]`);
    const otherMnt = inspectProcess('/proc/self', me, { ...me, namespaces: { ...me.namespaces, mnt: 'mnt:[1]' } });
    expect(Object.keys(otherMnt.namespaces)).toEqual(['net', 'mnt']);
    expect(otherMnt.cwd).toBeUndefined();
  });

  it('stats root and cwd only for a process whose paths already match', () => {
    const me = ownView();
    const elsewhere = inspectProcess('/proc/self', me, { ...me, cwd: '/somewhere/else' });
    expect(elsewhere.cwdId).toBeUndefined();
    expect(elsewhere.rootId).toBeUndefined();
    expect(inspectProcess('/proc/self', me, me).cwdId).toBe(me.cwdId);
  });
});
