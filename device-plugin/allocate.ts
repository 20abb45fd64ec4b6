import { basename } from 'node:path';
import { BerthError } from '../lib/errors.js';
import type { AllocateRequest, AllocateResponse, ContainerAllocateResponse } from '../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import type { Gpu } from './backend/types.js';
import type { GpuConfig } from './config.js';
import type { AdvertisedDevice } from './devices.js';

// Allocate (deviceplugin/v1beta1): turn the device IDs kubelet picked for one container into
// what the runtime needs, for each selected device list strategy. Pure; the server only calls it.

/** The variable the NVIDIA container runtime (hook and CDI mode) reads to pick GPUs. */
export const visibleDevicesEnv = 'NVIDIA_VISIBLE_DEVICES';

export interface AllocationContext {
  devices: AdvertisedDevice[];
  /** UUIDs of unhealthy GPUs. */
  unhealthy: ReadonlySet<string>;
  /** Host paths of nvidiactl, nvidia-uvm, ... (device-specs strategy). */
  controlDevices: string[];
  strategy: GpuConfig['deviceListStrategy'];
  cdiKind: string;
  failRequestsGreaterThanOne: boolean;
  replicas: number;
}

function fail(message: string): never {
  throw new BerthError('invalid-argument', message);
}

/** Validate `ids` and return the distinct GPUs behind them, sorted by index. */
function gpusFor(ids: string[], ctx: AllocationContext): Gpu[] {
  if (ids.length === 0) fail('devices_ids: no device IDs requested');
  const byId = new Map(ctx.devices.map((d) => [d.id, d]));
  const seen = new Set<string>();
  const duplicates = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) duplicates.add(id);
    seen.add(id);
  }
  if (duplicates.size > 0) fail(`devices_ids: duplicate device IDs: ${[...duplicates].join(', ')}`);
  const unknown = ids.filter((id) => !byId.has(id));
  if (unknown.length > 0) fail(`devices_ids: unknown device IDs: ${unknown.join(', ')}`);
  const sick = ids.filter((id) => ctx.unhealthy.has(byId.get(id)!.gpu.uuid));
  if (sick.length > 0) fail(`devices_ids: devices of unhealthy GPUs: ${sick.join(', ')}`);
  if (ctx.replicas > 1 && ctx.failRequestsGreaterThanOne && ids.length > 1) {
    fail(
      `devices_ids: ${ids.length} shared GPU replicas requested (${ids.join(', ')}) but ` +
        'sharing.timeSlicing.failRequestsGreaterThanOne allows at most 1: more replicas give a container no more GPU time',
    );
  }
  const gpus = new Map<string, Gpu>();
  for (const id of ids) {
    const gpu = byId.get(id)!.gpu;
    gpus.set(gpu.uuid, gpu);
  }
  return [...gpus.values()].sort((a, b) => a.index - b.index);
}

/** The response for one container's device IDs; throws BerthError('invalid-argument'). */
export function planContainerAllocation(ids: string[], ctx: AllocationContext): ContainerAllocateResponse {
  const gpus = gpusFor(ids, ctx);
  const response: ContainerAllocateResponse = { envs: {}, mounts: [], devices: [], annotations: {}, cdiDevices: [] };
  const strategies = new Set(ctx.strategy);

  if (strategies.has('envvar')) {
    response.envs[visibleDevicesEnv] = gpus.map((g) => g.uuid).join(',');
  }
  if (strategies.has('device-specs')) {
    for (const gpu of gpus) {
      response.devices.push({ containerPath: `/dev/nvidia${gpu.index}`, hostPath: gpu.devicePath, permissions: 'rw' });
    }
    for (const hostPath of ctx.controlDevices) {
      response.devices.push({ containerPath: `/dev/${basename(hostPath)}`, hostPath, permissions: 'rw' });
    }
  }
  if (strategies.has('cdi')) {
    for (const gpu of gpus) response.cdiDevices.push({ name: `${ctx.cdiKind}=${gpu.uuid}` });
  }
  // CUDA images set NVIDIA_VISIBLE_DEVICES=all; with the NVIDIA runtime installed, its hook
  // would then add every GPU on top of the ones passed as device specs or CDI devices. 'void'
  // makes it add none (as NVIDIA's plugin does when it does not pass the list in the env).
  if (!strategies.has('envvar')) response.envs[visibleDevicesEnv] = 'void';
  return response;
}

/** Allocate for every container of the request; errors are prefixed with `container_requests[i].`. */
export function planAllocate(req: AllocateRequest, ctx: AllocationContext): AllocateResponse {
  return {
    containerResponses: req.containerRequests.map((container, i) => {
      try {
        return planContainerAllocation(container.devicesIds, ctx);
      } catch (err) {
        if (err instanceof BerthError) throw new BerthError(err.kind, `container_requests[${i}].${err.message}`, { cause: err });
        throw err;
      }
    }),
  };
}
