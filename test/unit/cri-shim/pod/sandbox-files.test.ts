import { describe, expect, it } from 'vitest';
import { hostsFor, resolvConfFor } from '../../../../cri-shim/pod/sandbox-files.js';
import { NamespaceMode, PodSandboxConfig } from '../../../../proto/gen/runtime/v1/api.js';

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
