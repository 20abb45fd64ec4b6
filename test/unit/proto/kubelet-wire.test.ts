import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callUnary, serveUnix, unary, unixClient, type UnixServer } from '../../../lib/grpc/unix-socket.js';
import {
  AllocateRequest,
  AllocateResponse,
  ContainerPreferredAllocationRequest,
  DevicePluginClient,
  DevicePluginService,
  ListAndWatchResponse,
  RegisterRequest,
  RegistrationService as DeviceRegistrationService,
} from '../../../proto/gen/kubelet/deviceplugin/v1beta1/api.js';
import {
  PluginInfo,
  RegistrationClient as PluginRegistrationClient,
  RegistrationService as PluginRegistrationService,
  RegistrationStatus,
} from '../../../proto/gen/kubelet/pluginregistration/v1/api.js';
import { repoRoot } from '../../../world/cni.js';

// kubelet's device manager and plugin watcher are compiled against k8s.io/kubelet's
// deviceplugin/v1beta1 and pluginregistration/v1 protos: they decode by field number and route
// by "/v1beta1.DevicePlugin/..." and "/pluginregistration.Registration/...". These pin tags on
// the wire (field number << 3 | wire type) for messages built by hand, and check that the
// checked-in TypeScript is what proto/kubelet generates.

const tag = (field: number, wireType: number) => (field << 3) | wireType;
const bytes = (b: Uint8Array) => [...b];
const str = (s: string) => [s.length, ...Buffer.from(s)];
/** A length-delimited field holding an already encoded message (short: one length byte). */
const sub = (field: number, inner: number[]) => {
  if (inner.length > 127) throw new Error('sub: inner message too long for a one-byte length');
  return [tag(field, 2), inner.length, ...inner];
};
/** A map<string, string> entry: key is 1, value is 2. */
const entry = (field: number, key: string, value: string) => sub(field, [tag(1, 2), ...str(key), tag(2, 2), ...str(value)]);

describe('kubelet device plugin v1beta1 on the wire', () => {
  it('RegisterRequest: version 1, endpoint 2, resource_name 3, options 4 (get_preferred_allocation_available 2)', () => {
    const b = RegisterRequest.encode(
      RegisterRequest.fromPartial({
        version: 'v1beta1',
        endpoint: 'berth-gpu.sock',
        resourceName: 'berth.dev/gpu',
        options: { preStartRequired: false, getPreferredAllocationAvailable: true },
      }),
    ).finish();
    expect(bytes(b)).toEqual([
      tag(1, 2), ...str('v1beta1'),
      tag(2, 2), ...str('berth-gpu.sock'),
      tag(3, 2), ...str('berth.dev/gpu'),
      ...sub(4, [tag(2, 0), 1]),
    ]);
  });

  it('ListAndWatchResponse: devices 1, Device ID 1, health 2, topology 3 (NUMANode ID 1)', () => {
    const b = ListAndWatchResponse.encode(
      ListAndWatchResponse.fromPartial({
        devices: [
          { ID: 'gpu0', health: 'Healthy', topology: { nodes: [{ ID: 1n }] } },
          { ID: 'gpu1', health: 'Unhealthy' },
        ],
      }),
    ).finish();
    expect(bytes(b)).toEqual([
      ...sub(1, [tag(1, 2), ...str('gpu0'), tag(2, 2), ...str('Healthy'), ...sub(3, sub(1, [tag(1, 0), 1]))]),
      ...sub(1, [tag(1, 2), ...str('gpu1'), tag(2, 2), ...str('Unhealthy')]),
    ]);
    expect(ListAndWatchResponse.decode(b).devices[0]?.topology?.nodes[0]?.ID).toBe(1n);
  });

  it('AllocateRequest: container_requests 1, devices_ids 1', () => {
    const b = AllocateRequest.encode({ containerRequests: [{ devicesIds: ['gpu0', 'gpu1'] }, { devicesIds: [] }] }).finish();
    // The second container asks for nothing, yet still takes its place in the list.
    expect(bytes(b)).toEqual([...sub(1, [tag(1, 2), ...str('gpu0'), tag(1, 2), ...str('gpu1')]), ...sub(1, [])]);
  });

  it('ContainerAllocateResponse: envs 1, mounts 2, devices 3, annotations 4, cdi_devices 5', () => {
    const b = AllocateResponse.encode(
      AllocateResponse.fromPartial({
        containerResponses: [
          {
            envs: { A: '1' },
            mounts: [{ containerPath: '/c', hostPath: '/h', readOnly: true }],
            devices: [{ containerPath: '/dev/x', hostPath: '/dev/y', permissions: 'rw' }],
            annotations: { k: 'v' },
            cdiDevices: [{ name: 'berth.dev/gpu=0' }],
          },
        ],
      }),
    ).finish();
    expect(bytes(b)).toEqual(
      sub(1, [
        ...entry(1, 'A', '1'),
        // Mount: container_path 1, host_path 2, read_only 3
        ...sub(2, [tag(1, 2), ...str('/c'), tag(2, 2), ...str('/h'), tag(3, 0), 1]),
        // DeviceSpec: container_path 1, host_path 2, permissions 3
        ...sub(3, [tag(1, 2), ...str('/dev/x'), tag(2, 2), ...str('/dev/y'), tag(3, 2), ...str('rw')]),
        ...entry(4, 'k', 'v'),
        ...sub(5, [tag(1, 2), ...str('berth.dev/gpu=0')]),
      ]),
    );
    const back = AllocateResponse.decode(b).containerResponses[0]!;
    expect(back.envs).toEqual({ A: '1' });
    expect(back.cdiDevices).toEqual([{ name: 'berth.dev/gpu=0' }]);
  });

  it('ContainerPreferredAllocationRequest: available_deviceIDs 1, must_include_deviceIDs 2, allocation_size 3', () => {
    const b = ContainerPreferredAllocationRequest.encode({ availableDeviceIDs: ['a', 'b'], mustIncludeDeviceIDs: ['a'], allocationSize: 1 }).finish();
    expect(bytes(b)).toEqual([tag(1, 2), ...str('a'), tag(1, 2), ...str('b'), tag(2, 2), ...str('a'), tag(3, 0), 1]);
  });

  it('gRPC method paths are upstream\'s (package v1beta1)', () => {
    expect(DeviceRegistrationService.register.path).toBe('/v1beta1.Registration/Register');
    expect(DevicePluginService.getDevicePluginOptions.path).toBe('/v1beta1.DevicePlugin/GetDevicePluginOptions');
    expect(DevicePluginService.listAndWatch.path).toBe('/v1beta1.DevicePlugin/ListAndWatch');
    expect(DevicePluginService.getPreferredAllocation.path).toBe('/v1beta1.DevicePlugin/GetPreferredAllocation');
    expect(DevicePluginService.allocate.path).toBe('/v1beta1.DevicePlugin/Allocate');
    expect(DevicePluginService.preStartContainer.path).toBe('/v1beta1.DevicePlugin/PreStartContainer');
  });
});

describe('kubelet plugin registration v1 on the wire', () => {
  it('PluginInfo: type 1, name 2, endpoint 3, supported_versions 4', () => {
    const b = PluginInfo.encode({ type: 'CSIPlugin', name: 'csi.berth.dev', endpoint: '/run/csi.sock', supportedVersions: ['1.0.0', '1.1.0'] }).finish();
    expect(bytes(b)).toEqual([
      tag(1, 2), ...str('CSIPlugin'),
      tag(2, 2), ...str('csi.berth.dev'),
      tag(3, 2), ...str('/run/csi.sock'),
      tag(4, 2), ...str('1.0.0'), tag(4, 2), ...str('1.1.0'),
    ]);
  });

  it('RegistrationStatus: plugin_registered 1, error 2', () => {
    expect(bytes(RegistrationStatus.encode({ pluginRegistered: true, error: '' }).finish())).toEqual([tag(1, 0), 1]);
    expect(bytes(RegistrationStatus.encode({ pluginRegistered: false, error: 'no' }).finish())).toEqual([tag(2, 2), ...str('no')]);
  });

  it('gRPC method paths are upstream\'s (package pluginregistration, without a version)', () => {
    expect(PluginRegistrationService.getInfo.path).toBe('/pluginregistration.Registration/GetInfo');
    expect(PluginRegistrationService.notifyRegistrationStatus.path).toBe('/pluginregistration.Registration/NotifyRegistrationStatus');
  });
});

describe('kubelet plugin services over a unix socket', () => {
  let dir = '';
  let served: UnixServer | undefined;
  const clients: { close(): void }[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await served?.close();
    served = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('DevicePlugin.GetDevicePluginOptions and Registration.GetInfo answer the generated clients, as kubelet calls them', async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-kubelet-wire-'));
    const socket = join(dir, 'berth-gpu.sock');
    served = await serveUnix(socket, [
      [DevicePluginService, { getDevicePluginOptions: unary('GetDevicePluginOptions', async () => ({ preStartRequired: false, getPreferredAllocationAvailable: true })) }],
      [PluginRegistrationService, { getInfo: unary('GetInfo', async () => ({ type: 'DevicePlugin', name: 'berth.dev/gpu', endpoint: socket, supportedVersions: ['v1beta1'] })) }],
    ]);
    const devicePlugin = unixClient(DevicePluginClient, socket);
    const registration = unixClient(PluginRegistrationClient, socket);
    clients.push(devicePlugin, registration);
    expect(await callUnary(devicePlugin.getDevicePluginOptions.bind(devicePlugin), {})).toEqual({ preStartRequired: false, getPreferredAllocationAvailable: true });
    expect(await callUnary(registration.getInfo.bind(registration), {})).toEqual({ type: 'DevicePlugin', name: 'berth.dev/gpu', endpoint: socket, supportedVersions: ['v1beta1'] });
  });
});

describe('kubelet generated code', () => {
  it('proto/gen/kubelet is what scripts/gen-proto.sh generates from proto/kubelet', (ctx) => {
    if (spawnSync('protoc', ['--version']).status !== 0) {
      console.log('skipped: protoc is not installed (apt-get install protobuf-compiler)');
      ctx.skip();
    }
    const out = mkdtempSync(join(tmpdir(), 'berth-gen-'));
    try {
      execFileSync('bash', [join(repoRoot, 'scripts/gen-proto.sh'), out], { cwd: repoRoot, stdio: 'pipe' });
      const list = (root: string) =>
        readdirSync(join(root, 'kubelet'), { recursive: true, encoding: 'utf8' })
          .filter((f) => f.endsWith('.ts'))
          .map((f) => join('kubelet', f))
          .sort();
      const files = list(out);
      expect(files).toEqual(list(join(repoRoot, 'proto/gen')));
      expect(files).toEqual(['kubelet/deviceplugin/v1beta1/api.ts', 'kubelet/pluginregistration/v1/api.ts']);
      for (const file of files) {
        expect(readFileSync(join(out, file), 'utf8'), file).toBe(readFileSync(join(repoRoot, 'proto/gen', file), 'utf8'));
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
