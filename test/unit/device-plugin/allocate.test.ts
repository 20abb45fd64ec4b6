import { describe, expect, it } from 'vitest';
import { planAllocate, planContainerAllocation, type AllocationContext } from '../../../device-plugin/allocate.js';
import type { Gpu } from '../../../device-plugin/backend/types.js';
import { advertise } from '../../../device-plugin/devices.js';
import { BerthError } from '../../../lib/errors.js';
import { errorOf } from './fixtures.js';

function gpu(index: number): Gpu {
  return {
    index,
    uuid: `GPU-${index}${index}${index}${index}${index}${index}${index}${index}-0000-0000-0000-000000000000`,
    name: 'NVIDIA A100',
    memoryMiB: 40960,
    pciBusId: `00000000:0${index}:00.0`,
    numaNode: 0,
    devicePath: `/host/dev/nvidia${index}`,
  };
}

const gpus = [gpu(0), gpu(1), gpu(2)];
const [g0, g1, g2] = gpus as [Gpu, Gpu, Gpu];
const controlDevices = ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools'];

function ctx(overrides: Partial<AllocationContext> = {}): AllocationContext {
  const replicas = overrides.replicas ?? 1;
  return {
    devices: advertise(gpus, replicas),
    unhealthy: new Set(),
    controlDevices,
    strategy: ['envvar'],
    cdiKind: 'nvidia.com/gpu',
    failRequestsGreaterThanOne: false,
    replicas,
    ...overrides,
  };
}

describe('planContainerAllocation strategies', () => {
  it("'envvar' sets NVIDIA_VISIBLE_DEVICES to the UUIDs sorted by GPU index, and nothing else", () => {
    expect(planContainerAllocation([g2.uuid, g0.uuid], ctx())).toEqual({
      envs: { NVIDIA_VISIBLE_DEVICES: `${g0.uuid},${g2.uuid}` },
      mounts: [],
      devices: [],
      annotations: {},
      cdiDevices: [],
    });
  });

  it("'device-specs' passes each GPU as /dev/nvidia<index> plus every control device, rw", () => {
    const r = planContainerAllocation([g1.uuid, g0.uuid], ctx({ strategy: ['device-specs'] }));
    expect(r.devices).toEqual([
      { containerPath: '/dev/nvidia0', hostPath: '/host/dev/nvidia0', permissions: 'rw' },
      { containerPath: '/dev/nvidia1', hostPath: '/host/dev/nvidia1', permissions: 'rw' },
      { containerPath: '/dev/nvidiactl', hostPath: '/dev/nvidiactl', permissions: 'rw' },
      { containerPath: '/dev/nvidia-uvm', hostPath: '/dev/nvidia-uvm', permissions: 'rw' },
      { containerPath: '/dev/nvidia-uvm-tools', hostPath: '/dev/nvidia-uvm-tools', permissions: 'rw' },
    ]);
    // Without the env strategy the NVIDIA hook must not add the image's "all" on top.
    expect(r.envs).toEqual({ NVIDIA_VISIBLE_DEVICES: 'void' });
    expect(r.cdiDevices).toEqual([]);
  });

  it("'device-specs' names control devices by their basename in the container", () => {
    const r = planContainerAllocation([g0.uuid], ctx({ strategy: ['device-specs'], controlDevices: ['/fake/dev/nvidiactl'] }));
    expect(r.devices[1]).toEqual({ containerPath: '/dev/nvidiactl', hostPath: '/fake/dev/nvidiactl', permissions: 'rw' });
  });

  it("'device-specs' without control devices passes only the GPUs", () => {
    const r = planContainerAllocation([g0.uuid], ctx({ strategy: ['device-specs'], controlDevices: [] }));
    expect(r.devices).toHaveLength(1);
  });

  it("'cdi' alone names <kind>=<uuid> per GPU and sets NVIDIA_VISIBLE_DEVICES=void", () => {
    const r = planContainerAllocation([g2.uuid, g1.uuid], ctx({ strategy: ['cdi'], cdiKind: 'berth.dev/gpu' }));
    expect(r.cdiDevices).toEqual([{ name: `berth.dev/gpu=${g1.uuid}` }, { name: `berth.dev/gpu=${g2.uuid}` }]);
    expect(r.envs).toEqual({ NVIDIA_VISIBLE_DEVICES: 'void' });
    expect(r.devices).toEqual([]);
  });

  it("'cdi' with 'envvar' keeps the UUID list rather than void", () => {
    const r = planContainerAllocation([g0.uuid], ctx({ strategy: ['cdi', 'envvar'] }));
    expect(r.envs).toEqual({ NVIDIA_VISIBLE_DEVICES: g0.uuid });
    expect(r.cdiDevices).toEqual([{ name: `nvidia.com/gpu=${g0.uuid}` }]);
  });

  it("'cdi' with 'device-specs' sets void and passes the device nodes", () => {
    const r = planContainerAllocation([g0.uuid], ctx({ strategy: ['device-specs', 'cdi'] }));
    expect(r.envs).toEqual({ NVIDIA_VISIBLE_DEVICES: 'void' });
    expect(r.devices).toHaveLength(1 + controlDevices.length);
    expect(r.cdiDevices).toHaveLength(1);
  });

  it("'envvar' with 'device-specs' (the default) sets both", () => {
    const r = planContainerAllocation([g1.uuid], ctx({ strategy: ['envvar', 'device-specs'] }));
    expect(r.envs).toEqual({ NVIDIA_VISIBLE_DEVICES: g1.uuid });
    expect(r.devices.map((d) => d.containerPath)).toEqual(['/dev/nvidia1', '/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools']);
    expect(r.cdiDevices).toEqual([]);
  });

  it('all three strategies together', () => {
    const r = planContainerAllocation([g0.uuid, g1.uuid], ctx({ strategy: ['envvar', 'device-specs', 'cdi'] }));
    expect(r.envs).toEqual({ NVIDIA_VISIBLE_DEVICES: `${g0.uuid},${g1.uuid}` });
    expect(r.devices).toHaveLength(2 + controlDevices.length);
    expect(r.cdiDevices).toHaveLength(2);
    expect(r.mounts).toEqual([]);
    expect(r.annotations).toEqual({});
  });

  it('replicas of one GPU collapse to that GPU once, in every strategy', () => {
    const c = ctx({ replicas: 4, strategy: ['envvar', 'device-specs', 'cdi'] });
    const r = planContainerAllocation([`${g1.uuid}::3`, `${g1.uuid}::0`, `${g0.uuid}::2`], c);
    expect(r.envs.NVIDIA_VISIBLE_DEVICES).toBe(`${g0.uuid},${g1.uuid}`);
    expect(r.devices.slice(0, 2).map((d) => d.containerPath)).toEqual(['/dev/nvidia0', '/dev/nvidia1']);
    expect(r.devices).toHaveLength(2 + controlDevices.length);
    expect(r.cdiDevices).toEqual([{ name: `nvidia.com/gpu=${g0.uuid}` }, { name: `nvidia.com/gpu=${g1.uuid}` }]);
  });

  it('a strategy listed twice acts once', () => {
    const r = planContainerAllocation([g0.uuid], ctx({ strategy: ['device-specs', 'device-specs'] }));
    expect(r.devices).toHaveLength(1 + controlDevices.length);
  });
});

describe('planContainerAllocation validation', () => {
  it('an empty ID list is invalid-argument', () => {
    const err = errorOf(() => planContainerAllocation([], ctx()));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toMatch(/^devices_ids: /);
  });

  it('unknown IDs are invalid-argument naming all of them', () => {
    const err = errorOf(() => planContainerAllocation(['GPU-x', g0.uuid, 'GPU-y'], ctx()));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toBe('devices_ids: unknown device IDs: GPU-x, GPU-y');
  });

  it('a bare UUID is unknown under time-slicing, and a replica ID without it', () => {
    expect(errorOf(() => planContainerAllocation([g0.uuid], ctx({ replicas: 2 }))).message).toContain(g0.uuid);
    expect(errorOf(() => planContainerAllocation([`${g0.uuid}::0`], ctx()))).toBeInstanceOf(BerthError);
  });

  it('IDs of unhealthy GPUs are invalid-argument naming them', () => {
    const c = ctx({ replicas: 2, unhealthy: new Set([g1.uuid, g2.uuid]) });
    const err = errorOf(() => planContainerAllocation([`${g0.uuid}::0`, `${g1.uuid}::1`, `${g2.uuid}::0`], c));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toBe(`devices_ids: devices of unhealthy GPUs: ${g1.uuid}::1, ${g2.uuid}::0`);
  });

  it('unknown IDs are reported before unhealthy ones', () => {
    const err = errorOf(() => planContainerAllocation(['GPU-x', g1.uuid], ctx({ unhealthy: new Set([g1.uuid]) })));
    expect(err.message).toContain('unknown');
    expect(err.message).not.toContain(g1.uuid);
  });

  it('duplicate IDs are invalid-argument naming them', () => {
    const err = errorOf(() => planContainerAllocation([g0.uuid, g0.uuid], ctx()));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toContain(`duplicate device IDs: ${g0.uuid}`);
  });

  it('time-slicing with failRequestsGreaterThanOne refuses more than one replica, explaining why', () => {
    const c = ctx({ replicas: 2, failRequestsGreaterThanOne: true });
    const ids = [`${g0.uuid}::0`, `${g1.uuid}::0`];
    const err = errorOf(() => planContainerAllocation(ids, c));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toContain('failRequestsGreaterThanOne');
    expect(err.message).toContain(ids[0]);
    expect(err.message).toContain(ids[1]);
  });

  it('time-slicing with failRequestsGreaterThanOne allows exactly one replica', () => {
    const c = ctx({ replicas: 2, failRequestsGreaterThanOne: true });
    expect(planContainerAllocation([`${g0.uuid}::1`], c).envs.NVIDIA_VISIBLE_DEVICES).toBe(g0.uuid);
  });

  it('failRequestsGreaterThanOne has no effect without time-slicing', () => {
    const c = ctx({ replicas: 1, failRequestsGreaterThanOne: true });
    expect(planContainerAllocation([g0.uuid, g1.uuid], c).envs.NVIDIA_VISIBLE_DEVICES).toBe(`${g0.uuid},${g1.uuid}`);
  });

  it('time-slicing without failRequestsGreaterThanOne allows several replicas', () => {
    const c = ctx({ replicas: 2 });
    expect(planContainerAllocation([`${g0.uuid}::0`, `${g0.uuid}::1`], c).envs.NVIDIA_VISIBLE_DEVICES).toBe(g0.uuid);
  });
});

describe('planAllocate', () => {
  it('answers every container request in order', () => {
    const r = planAllocate({ containerRequests: [{ devicesIds: [g1.uuid] }, { devicesIds: [g0.uuid, g2.uuid] }] }, ctx());
    expect(r.containerResponses.map((c) => c.envs.NVIDIA_VISIBLE_DEVICES)).toEqual([g1.uuid, `${g0.uuid},${g2.uuid}`]);
  });

  it('an error names the container request it came from', () => {
    const err = errorOf(() => planAllocate({ containerRequests: [{ devicesIds: [g0.uuid] }, { devicesIds: ['GPU-x'] }] }, ctx()));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toBe('container_requests[1].devices_ids: unknown device IDs: GPU-x');
  });

  it('an empty container request is refused with its index', () => {
    const err = errorOf(() => planAllocate({ containerRequests: [{ devicesIds: [] }] }, ctx()));
    expect(err.message).toMatch(/^container_requests\[0\]\.devices_ids: /);
  });

  it('no container requests give no responses', () => {
    expect(planAllocate({ containerRequests: [] }, ctx())).toEqual({ containerResponses: [] });
  });
});
