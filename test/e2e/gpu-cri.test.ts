import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyValue } from '../../proto/gen/runtime/v1/api.js';
import type { ContainerAllocateResponse as GpuAllocation } from '../../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { fakeGpus, GpuWorld } from '../../world/gpu.js';
import { isRoot } from '../../world/netns.js';

// What kubelet does with a device plugin's answer: Allocate on berth-gpu (fake backend), then
// CreateContainer on berth-cri with the devices, environment and CDI device names from it; inside
// a real container (containerd + runc) the fake GPU's device node and NVIDIA_VISIBLE_DEVICES
// must be there. The CDI spec goes to /var/run/cdi, where berth-cri reads CDI specs, and is
// removed by berth-gpu when it stops.


describe.runIf(isRoot)('berth-gpu Allocate -> berth-cri CreateContainer', () => {
  let world: CriWorld;
  let gpu: GpuWorld;
  const gpus = fakeGpus(2);
  useCriWorld(['busybox'], (w) => (world = w));

  beforeAll(async () => {
    gpu = await GpuWorld.start(gpus, { deviceListStrategy: ['envvar', 'device-specs', 'cdi'], cdiSpecDir: '/var/run/cdi' });
    await gpu.kubelet.waitForRegistrations(1);
    await gpu.kubelet.waitForList('nvidia.com/gpu', (d) => d.length === 2);
  });
  afterAll(async () => {
    await gpu?.stop();
  });

  async function run(allocation: GpuAllocation, use: { devices: boolean; cdi: boolean }): Promise<string> {
    const config = containerConfig('gpu', world.image('busybox'), {
      command: ['sh', '-c', 'sleep 3600'],
      envs: Object.entries(allocation.envs).map(([key, value]) => KeyValue.fromPartial({ key, value: Buffer.from(value) })),
      devices: use.devices ? allocation.devices : [],
      CDIDevices: use.cdi ? allocation.cdiDevices : [],
    });
    const { id } = await startContainer(world, config);
    const out = await world.runtime.execSync({ containerId: id, cmd: ['sh', '-c', 'echo "env=$NVIDIA_VISIBLE_DEVICES"; for d in /dev/nvidia*; do stat -c "%n %F %t:%T" $d; done'], timeout: 10n });
    return out.stdout.toString() + out.stderr.toString();
  }

  it('device specs and the env: the container sees /dev/nvidia1 (char 195:1), nvidiactl, and its GPU UUID', async () => {
    const res = await gpu.kubelet.allocate('nvidia.com/gpu', [[gpus[1]!.uuid]]);
    const out = await run(res.containerResponses[0]!, { devices: true, cdi: false });
    expect(out).toContain(`env=${gpus[1]!.uuid}`);
    expect(out).toMatch(/\/dev\/nvidia1 character special file c3:1/);
    expect(out).toMatch(/\/dev\/nvidiactl character special file c3:ff/);
    expect(out).not.toMatch(/\/dev\/nvidia0 /);
  });

  it('CDI device names alone: berth-cri resolves them from the spec berth-gpu wrote', async () => {
    const res = await gpu.kubelet.allocate('nvidia.com/gpu', [[gpus[0]!.uuid]]);
    expect(res.containerResponses[0]!.cdiDevices).toEqual([{ name: `nvidia.com/gpu=${gpus[0]!.uuid}` }]);
    const out = await run(res.containerResponses[0]!, { devices: false, cdi: true });
    expect(out).toMatch(/\/dev\/nvidia0 character special file c3:0/);
    expect(out).not.toMatch(/\/dev\/nvidia1 /);
  });
});
