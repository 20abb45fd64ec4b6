import { describe, expect, it } from 'vitest';
import { buildContainerSpec } from '../../../../cri-shim/oci/container-spec.js';
import { buildSandboxSpec } from '../../../../cri-shim/oci/sandbox-spec.js';
import { containerUserns, planIdmapMounts, podUserns } from '../../../../cri-shim/oci/userns.js';
import { type IDMapping, MountPropagation, NamespaceMode, type NamespaceOption } from '../../../../proto/gen/runtime/v1/api.js';
import { containerConfig, containerInput, errorOf, podConfig, sandboxInput } from './fixtures.js';

const field = 'config.linux.security_context.namespace_options.userns_options';
const map = (hostId: number, length = 65536, containerId = 0): IDMapping => ({ hostId, containerId, length });
const ns = (mode: NamespaceMode, uids: IDMapping[] = [map(100000)], gids: IDMapping[] = uids): NamespaceOption => ({
  network: NamespaceMode.POD,
  pid: NamespaceMode.POD,
  ipc: NamespaceMode.POD,
  targetId: '',
  usernsOptions: { mode, uids, gids },
});
const validate = (o: NamespaceOption): string => errorOf(() => podUserns(o, 'config.linux.security_context'));
const usernsPod = podConfig({ linux: { securityContext: { namespaceOptions: ns(NamespaceMode.POD) } } });

describe('podUserns: kubelet mappings', () => {
  it('takes mode POD with equal uid and gid ranges, as OCI mappings', () => {
    expect(podUserns(ns(NamespaceMode.POD), 'x')).toEqual({ uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }] });
    const split = [map(100000, 1000), map(300000, 64536, 1000)];
    expect(podUserns(ns(NamespaceMode.POD, split), 'x')?.uidMappings).toHaveLength(2);
  });

  it('is nothing for NODE or no options, and refuses mappings with NODE', () => {
    expect(podUserns(undefined, 'x')).toBeUndefined();
    expect(podUserns(ns(NamespaceMode.NODE, []), 'x')).toBeUndefined();
    expect(validate(ns(NamespaceMode.NODE))).toContain(`${field}.uids: mappings are only for mode POD`);
  });

  it('refuses CONTAINER and TARGET, naming the mode field', () => {
    expect(validate(ns(NamespaceMode.CONTAINER))).toContain(`${field}.mode: CONTAINER user namespaces are not supported`);
    expect(validate(ns(NamespaceMode.TARGET))).toContain(`${field}.mode: TARGET`);
  });

  it('refuses bad mappings, naming the entry', () => {
    expect(validate(ns(NamespaceMode.POD, []))).toContain(`${field}.uids: at least one mapping`);
    expect(validate(ns(NamespaceMode.POD, [map(100000)], []))).toContain(`${field}.gids: at least one mapping`);
    expect(validate(ns(NamespaceMode.POD, [map(100000, 0)]))).toContain(`${field}.uids[0].length: must be at least 1`);
    expect(validate(ns(NamespaceMode.POD, [map(100000, 65536, 1)]))).toContain(`${field}.uids: container id 0 (root) is not mapped`);
    expect(validate(ns(NamespaceMode.POD, [map(0)]))).toContain(`${field}.uids[0].host_id: 0 maps the node's root`);
    expect(validate(ns(NamespaceMode.POD, [map(2 ** 32 - 10, 65536)]))).toContain(`${field}.uids[0].length: 65536 runs past`);
    expect(validate(ns(NamespaceMode.POD, [map(-1)]))).toContain(`${field}.uids[0].host_id: -1 is not a 32-bit id`);
    expect(validate(ns(NamespaceMode.POD, [map(100000, 1000), map(100500, 1000, 1000)]))).toContain(`${field}.uids[1].host_id: overlaps ${field}.uids[0]`);
    expect(validate(ns(NamespaceMode.POD, [map(100000, 1000), map(200000, 1000, 500)]))).toContain(`${field}.uids[1].container_id: overlaps`);
    expect(validate(ns(NamespaceMode.POD, Array.from({ length: 341 }, (_, i) => map(100000 + i, 1, i))))).toContain('the kernel takes at most 340');
    expect(validate(ns(NamespaceMode.POD, [map(100000)], [map(200000)]))).toContain(`${field}.gids: must equal uids`);
  });
});

describe('containerUserns: a container follows its pod', () => {
  const pod = podUserns(ns(NamespaceMode.POD), 'x');
  it('follows the pod when unset, and accepts the same mappings or none', () => {
    expect(containerUserns(undefined, pod, 'c')).toBe(pod);
    expect(containerUserns(ns(NamespaceMode.POD), pod, 'c')).toBe(pod);
    expect(containerUserns(ns(NamespaceMode.POD, []), pod, 'c')).toBe(pod);
    expect(containerUserns(ns(NamespaceMode.NODE, []), undefined, 'c')).toBeUndefined();
  });
  it('refuses leaving the pod, other mappings, and POD in a node-namespaced pod', () => {
    expect(errorOf(() => containerUserns(ns(NamespaceMode.NODE, []), pod, 'c'))).toContain('c.namespace_options.userns_options.mode: NODE, but the pod runs in its own user namespace');
    expect(errorOf(() => containerUserns(ns(NamespaceMode.POD, [map(200000)]), pod, 'c'))).toContain('uids: differ from the pod sandbox');
    expect(errorOf(() => containerUserns(ns(NamespaceMode.POD), undefined, 'c'))).toContain("the pod sandbox runs in the node's user namespace");
  });
});

describe('the specs of a user-namespaced pod', () => {
  it('joins the pause to the pinned user namespace with the mappings', () => {
    const spec = buildSandboxSpec(sandboxInput({ config: usernsPod, netnsPath: '/run/netns/p', usernsPath: '/pods/p/userns' }));
    expect(spec.linux?.namespaces).toContainEqual({ type: 'user', path: '/pods/p/userns' });
    expect(spec.linux?.namespaces).toContainEqual({ type: 'network', path: '/run/netns/p' });
    expect(spec.linux?.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(spec.linux?.gidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
  });

  it('refuses a pod the handler cannot run, saying why, and host namespaces or privilege', () => {
    expect(errorOf(() => buildSandboxSpec(sandboxInput({ config: usernsPod, usernsUnsupported: 'crun cannot' })))).toContain(`${field}.mode: POD user namespaces are not supported here: crun cannot`);
    const hostNet = podConfig({ linux: { securityContext: { namespaceOptions: { ...ns(NamespaceMode.POD), network: NamespaceMode.NODE } } } });
    expect(errorOf(() => buildSandboxSpec(sandboxInput({ config: hostNet, usernsPath: '/u' })))).toContain('namespace_options.network: NODE cannot be combined');
    const priv = podConfig({ linux: { securityContext: { privileged: true, namespaceOptions: ns(NamespaceMode.POD) } } });
    expect(errorOf(() => buildSandboxSpec(sandboxInput({ config: priv, usernsPath: '/u' })))).toContain('privileged: a privileged container cannot run in a user namespace');
  });

  it("joins a container to the pod's user namespace and refuses non-private propagation", () => {
    const spec = buildContainerSpec(containerInput({ sandboxConfig: usernsPod, usernsPath: '/pods/p/userns' }));
    expect(spec.linux?.namespaces).toContainEqual({ type: 'user', path: '/pods/p/userns' });
    expect(spec.linux?.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    const slave = containerConfig({ mounts: [{ containerPath: '/d', hostPath: '/h', propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }] });
    expect(errorOf(() => buildContainerSpec(containerInput({ sandboxConfig: usernsPod, usernsPath: '/u', config: slave })))).toContain('config.mounts[0].propagation: PROPAGATION_HOST_TO_CONTAINER is not supported');
    expect(() => buildContainerSpec(containerInput({ sandboxConfig: usernsPod }))).toThrow('the pod sandbox has no user namespace to join');
  });

  it('points root and every bind mount at the staging directory, and leaves kernel mounts alone', () => {
    const config = containerConfig({ mounts: [{ containerPath: '/data', hostPath: '/srv/data' }] });
    const spec = buildContainerSpec(containerInput({ sandboxConfig: usernsPod, usernsPath: '/u', config }));
    const binds = spec.mounts!.filter((m) => m.type === 'bind').map((m) => [m.destination, m.source]);
    const plan = planIdmapMounts(spec, '/pods/p/idmap/c1');
    expect(spec.root?.path).toBe('/pods/p/idmap/c1/rootfs');
    expect(plan.rootfs).toBe('/pods/p/idmap/c1/rootfs');
    expect(plan.binds.map((b) => [b.destination, b.source])).toEqual(binds);
    expect(plan.binds.map((b) => b.target)).toEqual(binds.map((_, i) => `/pods/p/idmap/c1/m${i}`));
    expect(plan.binds.map((b) => b.destination)).toContain('/data');
    for (const m of spec.mounts!) {
      if (m.type === 'bind') expect(m.source?.startsWith('/pods/p/idmap/c1/m')).toBe(true);
      else expect(m.source).not.toContain('/pods/');
    }
  });
});
