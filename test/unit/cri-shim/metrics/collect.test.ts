import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { countFds, podCgroupPath } from '../../../../cri-shim/metrics/collect.js';
import type { SandboxRecord } from '../../../../cri-shim/store/records.js';
import { PodSandboxConfig } from '../../../../proto/gen/runtime/v1/api.js';

const sandbox = (cgroupParent: string, cgroupsPath: string): SandboxRecord =>
  ({ id: 'sb', cgroupsPath, config: PodSandboxConfig.fromPartial({ linux: { cgroupParent } }) }) as SandboxRecord;

describe('podCgroupPath', () => {
  it('is the parent of the sandbox cgroup (cgroupfs) or its slice (systemd) when kubelet gave the pod one', () => {
    expect(podCgroupPath(sandbox('/kubepods/burstable/pod1', '/kubepods/burstable/pod1/sb'), 'cgroupfs')).toBe('/kubepods/burstable/pod1');
    expect(podCgroupPath(sandbox('kubepods-burstable-pod1.slice', 'kubepods-burstable-pod1.slice:berth:sb'), 'systemd')).toBe(
      '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice',
    );
  });

  it('is none for a pod without a cgroup parent: it shares berth\'s default parent with every other pod', () => {
    expect(podCgroupPath(sandbox('', '/berth.io/sb'), 'cgroupfs')).toBeUndefined();
    expect(podCgroupPath(sandbox('/p', ''), 'cgroupfs')).toBeUndefined();
  });
});

describe('countFds', () => {
  let proc = '';
  beforeEach(() => { proc = mkdtempSync(join(tmpdir(), 'berth-proc-')); });
  afterEach(() => rmSync(proc, { recursive: true, force: true }));

  it('counts descriptors and the sockets among them, skipping processes that are gone', () => {
    mkdirSync(join(proc, '10', 'fd'), { recursive: true });
    symlinkSync('/dev/null', join(proc, '10', 'fd', '0'));
    symlinkSync('socket:[1234]', join(proc, '10', 'fd', '1'));
    symlinkSync('pipe:[99]', join(proc, '10', 'fd', '2'));
    mkdirSync(join(proc, '11', 'fd'), { recursive: true });
    symlinkSync('socket:[77]', join(proc, '11', 'fd', '3'));
    expect(countFds([10, 11, 12], proc)).toEqual({ files: 4n, sockets: 2n });
    expect(countFds([], proc)).toEqual({ files: 0n, sockets: 0n });
  });
});
