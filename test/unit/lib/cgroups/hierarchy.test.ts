import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectCgroupMode, expandSlice, parseMountInfo, resolveCgroupPath, v1CgroupDir } from '../../../../lib/cgroups/hierarchy.js';
import { fakeV1, files, pod, root, useFakeRoot } from './fixtures.js';

// Where a cgroup's files are: the host's layout on fake trees in a temp dir, and the pure path
// logic.

useFakeRoot();

describe('detectCgroupMode', () => {
  it('is v2 when the root has cgroup.controllers', () => {
    files(root, { 'cgroup.controllers': 'cpu\n' });
    expect(detectCgroupMode(root)).toBe('v2');
  });
  it('is hybrid when only <root>/unified is cgroup2', () => {
    files(root, { 'unified/cgroup.controllers': '\n', 'memory/memory.stat': '' });
    expect(detectCgroupMode(root)).toBe('hybrid');
  });
  it('is v1 otherwise', () => {
    files(root, { 'memory/memory.stat': '' });
    expect(detectCgroupMode(root)).toBe('v1');
  });
});

describe('resolveCgroupPath', () => {
  it('cgroupfs: the path as given', () => {
    expect(resolveCgroupPath('/kubepods/besteffort/pod1/abc', 'cgroupfs')).toBe('/kubepods/besteffort/pod1/abc');
  });
  it('systemd: slice:prefix:name becomes the expanded slices and a scope', () => {
    expect(resolveCgroupPath('kubepods-burstable-pod1.slice:cri-containerd:abc', 'systemd'))
      .toBe('/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope');
  });
  it('systemd: an empty slice means system.slice, a name that is a slice is kept as is', () => {
    expect(resolveCgroupPath(':runc:abc', 'systemd')).toBe('/system.slice/runc-abc.scope');
    expect(resolveCgroupPath('kubepods.slice:x:kubepods-pod2.slice', 'systemd')).toBe('/kubepods.slice/kubepods-pod2.slice');
    expect(resolveCgroupPath('-.slice:p:n', 'systemd')).toBe('/p-n.scope');
  });
  it('systemd: rejects a path that is not slice:prefix:name, and bad slices', () => {
    expect(() => resolveCgroupPath('/kubepods/pod1', 'systemd')).toThrow(/slice:prefix:name/);
    expect(() => resolveCgroupPath('a--b.slice:p:n', 'systemd')).toThrow(/invalid slice/);
    expect(() => resolveCgroupPath('a/b.slice:p:n', 'systemd')).toThrow(/invalid slice/);
    expect(() => resolveCgroupPath('kubepods:p:n', 'systemd')).toThrow(/invalid slice/);
  });
  it('expandSlice nests each dash-separated prefix', () => {
    expect(expandSlice('a-b-c.slice')).toBe('/a.slice/a-b.slice/a-b-c.slice');
    expect(expandSlice('-')).toBe('/');
  });
});

describe('parseMountInfo', () => {
  const text = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct',
    '35 31 0:32 /kube /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    '90 20 0:29 / /mnt/other\\040dir rw - cgroup cgroup rw,cpu,cpuacct',
  ].join('\n');

  it('maps both controllers of a joint mount to it and prefers mounts under the root', () => {
    const h = parseMountInfo(text);
    expect(h.get('cpu')).toEqual({ mountPoint: '/sys/fs/cgroup/cpu,cpuacct', mountRoot: '/' });
    expect(h.get('cpuacct')?.mountPoint).toBe('/sys/fs/cgroup/cpu,cpuacct');
    expect(h.get('name=systemd')?.mountPoint).toBe('/sys/fs/cgroup/systemd');
    expect(h.has('pids')).toBe(false);
  });
  it('unescapes octal escapes in mount points', () => {
    expect(parseMountInfo(text, '/mnt').get('cpu')?.mountPoint).toBe('/mnt/other dir');
  });
});

describe('v1CgroupDir on a fake tree', () => {
  it('finds a controller inside a joint-mount directory', () => {
    fakeV1();
    expect(v1CgroupDir('cpuacct', pod, root)).toBe(join(root, 'cpu,cpuacct', pod));
    expect(v1CgroupDir('memory', pod, root)).toBe(join(root, 'memory', pod));
    expect(v1CgroupDir('blkio', pod, root)).toBeUndefined();
  });
});
