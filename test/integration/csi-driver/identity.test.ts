import { describe, expect, it } from 'vitest';
import { GrpcStatus } from '../../../lib/errors.js';
import { PluginCapability_Service_Type as Service, PluginCapability_VolumeExpansion_Type as Expansion } from '../../../proto/gen/csi.js';
import { MiB, mountCap, type CsiDriver } from '../../../world/csi.js';
import { expectStatus, useCsiDriver } from '../../../world/csi-suite.js';
import { isRoot } from '../../../world/netns.js';

describe.runIf(isRoot)('berth-csi Identity', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x));

  it('GetPluginInfo names the driver local.csi.berth.io with a version', async () => {
    const info = await d.identity.getPluginInfo();
    expect(info.name).toBe('local.csi.berth.io');
    expect(info.vendorVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.manifest.node).toBe('node-a');
  });

  it('GetPluginCapabilities: controller, topology, group controller, online and offline expansion', async () => {
    const { capabilities } = await d.identity.getPluginCapabilities();
    const services = capabilities.map((c) => c.service?.type).filter((t) => t !== undefined);
    const expansion = capabilities.map((c) => c.volumeExpansion?.type).filter((t) => t !== undefined);
    expect(services.sort()).toEqual([Service.CONTROLLER_SERVICE, Service.VOLUME_ACCESSIBILITY_CONSTRAINTS, Service.GROUP_CONTROLLER_SERVICE].sort());
    expect(expansion.sort()).toEqual([Expansion.ONLINE, Expansion.OFFLINE].sort());
  });

  it('Probe answers ready', async () => {
    expect((await d.identity.probe()).ready).toBe(true);
  });

  it('a created volume can be deleted, twice', async () => {
    const { volume } = await d.controller.createVolume({ name: 'identity-smoke', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 32 * MiB } });
    expect(volume!.capacityBytes).toBe(BigInt(32 * MiB));
    await d.controller.deleteVolume({ volumeId: volume!.volumeId });
    await d.controller.deleteVolume({ volumeId: volume!.volumeId });
    await expectStatus(d.controller.controllerGetVolume({ volumeId: volume!.volumeId }), GrpcStatus.NOT_FOUND, 'volume_id');
  });
});
