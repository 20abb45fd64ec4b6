import { describe, expect, it } from 'vitest';
import { runcOptionsAny } from '../../../../cri-shim/containerd/containers.js';

describe('runcOptionsAny', () => {
  it('encodes runc options with the binary name, root and systemd cgroups', () => {
    const any = runcOptionsAny({ binaryName: 'crun', root: '/run/crun', systemdCgroup: true });
    expect(any.typeUrl).toBe('containerd.runc.v1.Options');
    // field 6 "crun", field 7 "/run/crun", field 9 true
    expect(Buffer.from(any.value).toString('hex')).toBe(`3204${Buffer.from('crun').toString('hex')}3a09${Buffer.from('/run/crun').toString('hex')}4801`);
  });
});
