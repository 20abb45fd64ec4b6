import { KeyValue, type ContainerConfig } from '../proto/gen/runtime/v1/api.js';
import { fakeGpus, GpuWorld } from '../world/gpu.js';

// The GPU part of the pod demo: berth-gpu on its fake backend (two described GPUs, device nodes
// it makes, an events file for injected Xids) registers with a fake kubelet, lists its GPUs,
// and answers Allocate; the answer goes into the pod's container as kubelet would pass it to
// berth-cri. After the pod, an injected Xid shows the GPU going Unhealthy in ListAndWatch.

type Say = (text: string) => void;
const resource = 'nvidia.com/gpu';

export interface DemoGpu {
  world: GpuWorld;
  uuid: string;
  /** What kubelet adds to the container: the devices and environment from Allocate. */
  container: Pick<ContainerConfig, 'devices' | 'envs'>;
}

export async function allocateGpu(step: Say, show: Say): Promise<DemoGpu> {
  step('starting berth-gpu (fake backend, 2 GPUs) behind a fake kubelet; ListAndWatch; Allocate one GPU');
  const gpus = fakeGpus(2);
  const world = await GpuWorld.start(gpus, { deviceListStrategy: ['envvar', 'device-specs'] });
  try {
    await world.kubelet.waitForRegistrations(1);
    const reg = world.kubelet.registrations[0]!;
    show(`registered ${reg.resourceName} (endpoint ${reg.endpoint}, API ${reg.version})`);
    const { devices } = await world.kubelet.waitForList(resource, (d) => d.length === 2);
    show(devices.map((d) => `${d.ID} ${d.health} NUMA ${d.topology?.nodes.map((n) => String(n.ID)).join(',')}`).join('\n'));
    const uuid = gpus[1]!.uuid;
    const res = (await world.kubelet.allocate(resource, [[uuid]])).containerResponses[0]!;
    show(`Allocate ${uuid}: env ${JSON.stringify(res.envs)}, devices ${res.devices.map((d) => `${d.hostPath} -> ${d.containerPath}`).join(', ')}`);
    return {
      world,
      uuid,
      container: {
        devices: res.devices,
        envs: Object.entries(res.envs).map(([key, value]) => KeyValue.fromPartial({ key, value: Buffer.from(value) })),
      },
    };
  } catch (err) {
    await world.stop();
    throw err;
  }
}

/** Inject an Xid and wait for the GPU to be listed Unhealthy; returns the milliseconds it took. */
export async function injectXid(gpu: DemoGpu, step: Say, show: Say): Promise<number> {
  step(`injecting Xid 79 ("GPU has fallen off the bus") for ${gpu.uuid}`);
  const t0 = Date.now();
  gpu.world.inject(`xid ${gpu.uuid} 79`);
  const seen = await gpu.world.kubelet.waitForList(resource, (d) => d.find((x) => x.ID === gpu.uuid)?.health === 'Unhealthy', 2000);
  show(`ListAndWatch after ${seen.at - t0} ms: ${seen.devices.map((d) => `${d.ID} ${d.health}`).join(', ')}`);
  return seen.at - t0;
}
