import type { Logger } from 'pino';
import { BerthError } from '../../lib/errors.js';
import { unary } from '../../lib/grpc/unix-socket.js';
import {
  ControllerServiceCapability_RPC_Type as ControllerRpc,
  NodeServiceCapability_RPC_Type as NodeRpc,
  type ControllerServer,
  type GroupControllerServer,
  type NodeServer,
} from '../../proto/gen/csi.js';
import type { Driver } from '../driver.js';
import { createGroupSnapshot, deleteGroupSnapshot, getGroupSnapshot, groupCapabilities } from './group-snapshots.js';
import { nodeTopology } from './messages.js';
import { nodePublishVolume, nodeUnpublishVolume } from './node-publish.js';
import { nodeStageVolume, nodeUnstageVolume } from './node-stage.js';
import { nodeGetVolumeStats } from './node-stats.js';
import { createSnapshot, deleteSnapshot, getSnapshot, listSnapshots } from './snapshots.js';
import { createVolume } from './volume-create.js';
import { deleteVolume } from './volume-delete.js';
import { controllerExpandVolume, nodeExpandVolume } from './volume-expand.js';
import { controllerGetVolume, getCapacity, listVolumes, validateVolumeCapabilities } from './volume-query.js';

// The gRPC services: each RPC is one function in its own file; this file only wires them and
// lists the capabilities, which must match what those functions do.

/**
 * GET_SNAPSHOT is alpha (CSI 1.12) and not advertised: older COs and csi-sanity releases
 * reject capability values they do not know. GetSnapshot is served all the same.
 */
const controllerCapabilities = [
  ControllerRpc.CREATE_DELETE_VOLUME,
  ControllerRpc.LIST_VOLUMES,
  ControllerRpc.GET_CAPACITY,
  ControllerRpc.CREATE_DELETE_SNAPSHOT,
  ControllerRpc.LIST_SNAPSHOTS,
  ControllerRpc.CLONE_VOLUME,
  ControllerRpc.EXPAND_VOLUME,
  ControllerRpc.VOLUME_CONDITION,
  ControllerRpc.GET_VOLUME,
  ControllerRpc.SINGLE_NODE_MULTI_WRITER,
];

const nodeCapabilities = [
  NodeRpc.STAGE_UNSTAGE_VOLUME,
  NodeRpc.GET_VOLUME_STATS,
  NodeRpc.EXPAND_VOLUME,
  NodeRpc.VOLUME_CONDITION,
  NodeRpc.SINGLE_NODE_MULTI_WRITER,
  NodeRpc.VOLUME_MOUNT_GROUP,
];

function notServed(rpc: string, why: string): () => Promise<never> {
  return async () => {
    throw new BerthError('unimplemented', `${rpc}: ${why}`);
  };
}

export function controllerServer(driver: Driver, log: Logger): ControllerServer {
  return {
    createVolume: unary('CreateVolume', (req) => createVolume(driver, req), log),
    deleteVolume: unary('DeleteVolume', (req) => deleteVolume(driver, req), log),
    controllerPublishVolume: unary('ControllerPublishVolume', notServed('ControllerPublishVolume', 'local volumes need no attach step (PUBLISH_UNPUBLISH_VOLUME is not advertised)'), log),
    controllerUnpublishVolume: unary('ControllerUnpublishVolume', notServed('ControllerUnpublishVolume', 'local volumes need no detach step (PUBLISH_UNPUBLISH_VOLUME is not advertised)'), log),
    validateVolumeCapabilities: unary('ValidateVolumeCapabilities', (req) => validateVolumeCapabilities(driver, req), log),
    listVolumes: unary('ListVolumes', (req) => listVolumes(driver, req), log),
    getCapacity: unary('GetCapacity', (req) => getCapacity(driver, req), log),
    controllerGetCapabilities: unary('ControllerGetCapabilities', async () => ({ capabilities: controllerCapabilities.map((type) => ({ rpc: { type } })) }), log),
    createSnapshot: unary('CreateSnapshot', (req) => createSnapshot(driver, req), log),
    deleteSnapshot: unary('DeleteSnapshot', (req) => deleteSnapshot(driver, req), log),
    listSnapshots: unary('ListSnapshots', (req) => listSnapshots(driver, req), log),
    getSnapshot: unary('GetSnapshot', (req) => getSnapshot(driver, req), log),
    controllerExpandVolume: unary('ControllerExpandVolume', (req) => controllerExpandVolume(driver, req), log),
    controllerGetVolume: unary('ControllerGetVolume', (req) => controllerGetVolume(driver, req), log),
    controllerModifyVolume: unary('ControllerModifyVolume', notServed('ControllerModifyVolume', 'berth-csi volumes have no mutable parameters (MODIFY_VOLUME is not advertised)'), log),
  };
}

export function groupControllerServer(driver: Driver, log: Logger): GroupControllerServer {
  return {
    groupControllerGetCapabilities: unary('GroupControllerGetCapabilities', async () => groupCapabilities(), log),
    createVolumeGroupSnapshot: unary('CreateVolumeGroupSnapshot', (req) => createGroupSnapshot(driver, req), log),
    deleteVolumeGroupSnapshot: unary('DeleteVolumeGroupSnapshot', (req) => deleteGroupSnapshot(driver, req), log),
    getVolumeGroupSnapshot: unary('GetVolumeGroupSnapshot', (req) => getGroupSnapshot(driver, req), log),
  };
}

export function nodeServer(driver: Driver, log: Logger): NodeServer {
  return {
    nodeStageVolume: unary('NodeStageVolume', (req) => nodeStageVolume(driver, req), log),
    nodeUnstageVolume: unary('NodeUnstageVolume', (req) => nodeUnstageVolume(driver, req), log),
    nodePublishVolume: unary('NodePublishVolume', (req) => nodePublishVolume(driver, req), log),
    nodeUnpublishVolume: unary('NodeUnpublishVolume', (req) => nodeUnpublishVolume(driver, req), log),
    nodeGetVolumeStats: unary('NodeGetVolumeStats', (req) => nodeGetVolumeStats(driver, req), log),
    nodeExpandVolume: unary('NodeExpandVolume', (req) => nodeExpandVolume(driver, req), log),
    nodeGetCapabilities: unary('NodeGetCapabilities', async () => ({ capabilities: nodeCapabilities.map((type) => ({ rpc: { type } })) }), log),
    nodeGetInfo: unary('NodeGetInfo', async () => ({
      nodeId: driver.config.nodeId,
      maxVolumesPerNode: BigInt(driver.config.maxVolumesPerNode),
      accessibleTopology: nodeTopology(driver),
    }), log),
  };
}
