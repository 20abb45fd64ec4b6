import { join } from 'node:path';
import { loopsBackedBy } from '../lib/loop.js';
import { isMountPoint } from '../lib/mount.js';
import { CsiDriver, MiB, mountCap } from '../world/csi.js';

// The volume part of the pod demo: what kubelet and the external provisioner do with berth-csi
// for a pod's PersistentVolumeClaim. CreateVolume (a 64 MiB ext4 filesystem in a sparse file),
// NodeStageVolume (loop device + mount), NodePublishVolume (bind mount into the pod's volume
// dir), then the pod uses it; afterwards the reverse, and a check that nothing leaked.

export interface DemoVolume {
  driver: CsiDriver;
  volumeId: string;
  staging: string;
  target: string;
}

type Say = (text: string) => void;

export async function provisionVolume(podUid: string, step: Say, show: Say): Promise<DemoVolume> {
  step('starting berth-csi and provisioning a 64 MiB ext4 volume (CreateVolume, NodeStage, NodePublish)');
  const driver = await CsiDriver.start({ nodeId: 'demo-node' });
  const info = await driver.identity.getPluginInfo();
  show(`${info.name} ${info.vendorVersion} on ${driver.socket}`);
  const cap = mountCap();
  const { volume } = await driver.controller.createVolume({
    name: 'pvc-web-data',
    volumeCapabilities: [cap],
    parameters: { type: 'filesystem', fsType: 'ext4' },
    capacityRange: { requiredBytes: BigInt(64 * MiB) },
  });
  const volumeId = volume!.volumeId;
  show(`volume ${volumeId}: ${Number(volume!.capacityBytes) / MiB} MiB, ${JSON.stringify(volume!.volumeContext)}`);
  // The paths kubelet uses for a CSI volume of a pod.
  const staging = join(driver.hostDir, 'plugins/kubernetes.io/csi/local.csi.berth.io', volumeId, 'globalmount');
  const target = join(driver.hostDir, 'pods', podUid, 'volumes/kubernetes.io~csi/web-data/mount');
  await driver.node.nodeStageVolume({ volumeId, stagingTargetPath: staging, volumeCapability: cap, volumeContext: volume!.volumeContext });
  await driver.node.nodePublishVolume({ volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: cap, volumeContext: volume!.volumeContext });
  const loop = loopsBackedBy(driver.root).map((l) => l.device).join(', ');
  show(`staged on ${loop} at ${staging}\npublished at ${target}`);
  return { driver, volumeId, staging, target };
}

export async function reportUsage(v: DemoVolume, show: Say): Promise<void> {
  const stats = await v.driver.node.nodeGetVolumeStats({ volumeId: v.volumeId, volumePath: v.target });
  const bytes = stats.usage.find((u) => u.unit === 1)!;
  show(`NodeGetVolumeStats: ${(Number(bytes.used) / MiB).toFixed(1)} MiB used of ${(Number(bytes.total) / MiB).toFixed(1)} MiB; condition ${stats.volumeCondition?.abnormal ? 'ABNORMAL' : 'healthy'}`);
}

/** Unpublish, unstage, delete (each twice: all idempotent); returns what leaked. */
export async function releaseVolume(v: DemoVolume, step: Say, show: Say): Promise<Record<string, number>> {
  step('NodeUnpublish, NodeUnstage, DeleteVolume (twice each: all idempotent)');
  for (let i = 0; i < 2; i++) await v.driver.node.nodeUnpublishVolume({ volumeId: v.volumeId, targetPath: v.target });
  for (let i = 0; i < 2; i++) await v.driver.node.nodeUnstageVolume({ volumeId: v.volumeId, stagingTargetPath: v.staging });
  for (let i = 0; i < 2; i++) await v.driver.controller.deleteVolume({ volumeId: v.volumeId });
  // The autoclear loop device goes with the last unmount; sysfs may take a moment to show it.
  for (let i = 0; i < 40 && loopsBackedBy(v.driver.root).length; i++) await new Promise((r) => setTimeout(r, 50));
  const left = {
    volumes: (await v.driver.controller.listVolumes()).entries.length,
    mounts: [v.target, v.staging].filter(isMountPoint).length,
    loopDevices: loopsBackedBy(v.driver.root).length,
  };
  show(JSON.stringify(left));
  return left;
}
