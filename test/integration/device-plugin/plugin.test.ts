import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { GrpcStatus } from '../../../lib/errors.js';
import type { Device } from '../../../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import { fakeGpus, GpuWorld } from '../../../world/gpu.js';
import { isRoot } from '../../../world/netns.js';

// berth-gpu end to end on its fake backend, driven by a fake kubelet written in TypeScript:
// registration, ListAndWatch, health from injected Xids and recovery, Allocate per strategy,
// preferred allocation, time-slicing, kubelet restarts, SIGHUP reloads and bad requests.

const gpus = fakeGpus(4);
const resource = 'nvidia.com/gpu';
let world: GpuWorld | undefined;

async function start(config: Record<string, unknown> = {}, n = 4): Promise<GpuWorld> {
  world = await GpuWorld.start(fakeGpus(n), config);
  await world.kubelet.waitForRegistrations(1);
  return world;
}

afterEach(async (ctx) => {
  if (world && ctx.task.result?.state === 'fail') console.log(world.log().slice(-4000));
  await world?.stop();
  world = undefined;
});

const healthOf = (devices: Device[], id: string): string | undefined => devices.find((d) => d.ID === id)?.health;

async function allocateError(w: GpuWorld, ids: string[][], res = resource): Promise<ServiceError> {
  return w.kubelet.allocate(res, ids).then(
    () => {
      throw new Error('Allocate succeeded');
    },
    (e: ServiceError) => e,
  );
}

describe.runIf(isRoot)('berth-gpu with a fake kubelet', () => {
  it('registers nvidia.com/gpu on kubelet.sock with its socket name and options', async () => {
    const w = await start();
    const req = w.kubelet.registrations[0]!;
    expect(req).toMatchObject({ version: 'v1beta1', endpoint: 'berth-gpu.sock', resourceName: resource });
    expect(req.options).toMatchObject({ getPreferredAllocationAvailable: true, preStartRequired: false });
    expect(statSync(join(w.kubeletDir, 'berth-gpu.sock')).isSocket()).toBe(true);
  });

  it('ListAndWatch lists every GPU Healthy with its NUMA node', async () => {
    const w = await start();
    const { devices } = await w.kubelet.waitForList(resource, (d) => d.length === 4);
    expect(devices.map((d) => d.ID).sort()).toEqual(gpus.map((g) => g.uuid).sort());
    expect(devices.every((d) => d.health === 'Healthy')).toBe(true);
    expect(devices.find((d) => d.ID === gpus[3]!.uuid)?.topology?.nodes.map((n) => Number(n.ID))).toEqual([1]);
  });

  it('an injected Xid 79 reaches ListAndWatch as Unhealthy within a second; an ignored Xid 13 changes nothing', async () => {
    const w = await start({ health: { recoveryQuietSeconds: 0 } });
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    const before = w.kubelet.plugin(resource).lists.length;
    w.inject(`xid ${gpus[1]!.uuid} 13`);
    await new Promise((r) => setTimeout(r, 600));
    expect(w.kubelet.plugin(resource).lists.length).toBe(before);
    const t0 = Date.now();
    w.inject(`xid ${gpus[1]!.uuid} 79`);
    const seen = await w.kubelet.waitForList(resource, (d) => healthOf(d, gpus[1]!.uuid) === 'Unhealthy', 1000);
    expect(seen.at - t0).toBeLessThan(1000);
    expect(healthOf(seen.devices, gpus[0]!.uuid)).toBe('Healthy');
  });

  it('an unhealthy GPU returns to Healthy after the quiet period once its probe answers, not before', async () => {
    const w = await start({ health: { recoveryQuietSeconds: 1 } });
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    w.inject(`probe-fail ${gpus[2]!.uuid}`);
    w.inject(`xid ${gpus[2]!.uuid} 48`);
    await w.kubelet.waitForList(resource, (d) => healthOf(d, gpus[2]!.uuid) === 'Unhealthy', 1000);
    await new Promise((r) => setTimeout(r, 2500));
    expect(healthOf(w.kubelet.plugin(resource).lists.at(-1)!.devices, gpus[2]!.uuid)).toBe('Unhealthy');
    w.inject(`probe-ok ${gpus[2]!.uuid}`);
    await w.kubelet.waitForList(resource, (d) => healthOf(d, gpus[2]!.uuid) === 'Healthy', 5000);
  });

  it('Allocate (envvar + device specs): NVIDIA_VISIBLE_DEVICES and the device nodes that exist', async () => {
    const w = await start();
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    const res = await w.kubelet.allocate(resource, [[gpus[1]!.uuid, gpus[0]!.uuid], [gpus[3]!.uuid]]);
    const [a, b] = res.containerResponses;
    expect(a!.envs.NVIDIA_VISIBLE_DEVICES).toBe(`${gpus[0]!.uuid},${gpus[1]!.uuid}`);
    expect(b!.envs.NVIDIA_VISIBLE_DEVICES).toBe(gpus[3]!.uuid);
    const paths = a!.devices.map((d) => d.containerPath);
    expect(paths).toEqual(expect.arrayContaining(['/dev/nvidia0', '/dev/nvidia1', '/dev/nvidiactl']));
    for (const d of a!.devices) expect(existsSync(d.hostPath)).toBe(true);
    expect(a!.cdiDevices).toEqual([]);
  });

  it('Allocate (cdi): CDI device names, and the CDI spec berth-gpu wrote', async () => {
    const w = await start({ deviceListStrategy: ['cdi'] });
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    const res = await w.kubelet.allocate(resource, [[gpus[2]!.uuid]]);
    expect(res.containerResponses[0]!.cdiDevices).toEqual([{ name: `nvidia.com/gpu=${gpus[2]!.uuid}` }]);
    const spec = JSON.parse(readFileSync(join(w.cdiDir, 'berth-gpu.json'), 'utf8')) as { kind: string; devices: { name: string }[] };
    expect(spec.kind).toBe('nvidia.com/gpu');
    expect(spec.devices.map((d) => d.name)).toContain(gpus[2]!.uuid);
  });

  it('Allocate of unknown or unhealthy IDs is INVALID_ARGUMENT naming them', async () => {
    const w = await start({ health: { recoveryQuietSeconds: 0 } });
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    const unknown = await allocateError(w, [['GPU-nope']]);
    expect(unknown.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(unknown.details).toMatch(/GPU-nope/);
    w.inject(`xid ${gpus[0]!.uuid} 79`);
    await w.kubelet.waitForList(resource, (d) => healthOf(d, gpus[0]!.uuid) === 'Unhealthy', 1000);
    const sick = await allocateError(w, [[gpus[0]!.uuid]]);
    expect(sick.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(sick.details).toContain(gpus[0]!.uuid);
  });

  it('GetPreferredAllocation honours must-include and keeps to its NUMA node and NVLink peer', async () => {
    const w = await start({}, 8);
    const all = fakeGpus(8).map((g) => g.uuid);
    await w.kubelet.waitForList(resource, (d) => d.length === 8);
    const res = await w.kubelet.preferred(resource, all, [all[5]!], 2);
    expect(res.containerResponses[0]!.deviceIDs.sort()).toEqual([all[4]!, all[5]!].sort());
  });

  it('time-slicing: replicas advertise <uuid>::<n> under nvidia.com/gpu.shared, and a request for two is refused when asked', async () => {
    const w = await start({ sharing: { timeSlicing: { replicas: 2, renameByDefault: true, failRequestsGreaterThanOne: true } } });
    const shared = `${resource}.shared`;
    expect(w.kubelet.registrations[0]!.resourceName).toBe(shared);
    const { devices } = await w.kubelet.waitForList(shared, (d) => d.length === 8);
    expect(devices.map((d) => d.ID)).toContain(`${gpus[0]!.uuid}::1`);
    const one = await w.kubelet.allocate(shared, [[`${gpus[0]!.uuid}::1`]]);
    expect(one.containerResponses[0]!.envs.NVIDIA_VISIBLE_DEVICES).toBe(gpus[0]!.uuid);
    const two = await allocateError(w, [[`${gpus[0]!.uuid}::0`, `${gpus[1]!.uuid}::0`]], shared);
    expect(two.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  });

  it('a kubelet restart (its socket and ours deleted, kubelet.sock recreated) brings a new registration and device list', async () => {
    const w = await start();
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    await w.kubelet.restart();
    await w.kubelet.waitForRegistrations(2);
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    expect(existsSync(join(w.kubeletDir, 'berth-gpu.sock'))).toBe(true);
  });

  it('SIGHUP reloads the configuration and registers the new resource; an invalid file keeps the running one', async () => {
    const w = await start();
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    w.writeConfig({ resourceName: 'example.com/gpu' });
    w.signal('SIGHUP');
    await w.kubelet.waitForRegistrations(2);
    expect(w.kubelet.registrations[1]!.resourceName).toBe('example.com/gpu');
    await w.kubelet.waitForList('example.com/gpu', (d) => d.length === 4);
    w.writeConfig({ resourceName: 'not a resource name' });
    w.signal('SIGHUP');
    for (let i = 0; i < 100 && !/not valid; keeping the running one/.test(w.log()); i++) await new Promise((r) => setTimeout(r, 20));
    expect(w.log()).toMatch(/resourceName/);
    expect(w.kubelet.registrations).toHaveLength(2);
  });

  it('/metrics counts devices, health transitions and allocations; /healthz answers once registered', async () => {
    const w = await start({ health: { recoveryQuietSeconds: 0 } });
    await w.kubelet.waitForList(resource, (d) => d.length === 4);
    const port = await w.metricsPort();
    await w.kubelet.allocate(resource, [[gpus[0]!.uuid]]);
    w.inject(`xid ${gpus[3]!.uuid} 79`);
    await w.kubelet.waitForList(resource, (d) => healthOf(d, gpus[3]!.uuid) === 'Unhealthy', 1000);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toMatch(/berth_gpu_devices\{health="unhealthy"\} 1/);
    expect(text).toMatch(/berth_gpu_health_transitions_total\{to="unhealthy"\} 1/);
    expect(text).toMatch(/berth_gpu_allocations_total 1/);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });
});
