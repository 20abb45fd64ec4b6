import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callUnary, serveUnix, unary, unixClient, type UnixServer } from '../../../lib/grpc/unix-socket.js';
import {
  ControllerServiceCapability_RPC_Type,
  CreateVolumeGroupSnapshotRequest,
  CreateVolumeRequest,
  GroupControllerService,
  GroupControllerServiceCapability_RPC_Type,
  IdentityClient,
  IdentityService,
  NodeGetVolumeStatsResponse,
  NodeService,
  NodeServiceCapability_RPC_Type,
  NodeStageVolumeRequest,
  PluginCapability_Service_Type,
  ProbeResponse,
  VolumeCapability_AccessMode_Mode,
  VolumeGroupSnapshot,
  VolumeUsage_Unit,
} from '../../../proto/gen/csi.js';
import { repoRoot } from '../../../world/cni.js';

// kubelet and the CSI sidecars are Go programs compiled against the upstream csi.proto: they
// decode what berth-csi sends by field number and route calls by "/csi.v1.Service/Method". These
// pin tags on the wire (field number << 3 | wire type) for messages built by hand, and check that
// the checked-in TypeScript is what proto/csi generates.

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

describe('CSI csi.v1 on the wire', () => {
  it('CreateVolumeRequest: name 1, capacity_range 2, volume_capabilities 3 (mount and block), parameters 4, secrets 5, volume_content_source 6', () => {
    const req = CreateVolumeRequest.fromPartial({
      name: 'pvc-1',
      capacityRange: { requiredBytes: 1024n },
      volumeCapabilities: [
        { mount: { fsType: 'ext4' }, accessMode: { mode: VolumeCapability_AccessMode_Mode.SINGLE_NODE_WRITER } },
        { block: {}, accessMode: { mode: VolumeCapability_AccessMode_Mode.MULTI_NODE_MULTI_WRITER } },
      ],
      parameters: { type: 'thin' },
      secrets: { key: 'k' },
      volumeContentSource: { snapshot: { snapshotId: 'snap-1' } },
    });
    const b = CreateVolumeRequest.encode(req).finish();
    expect(bytes(b)).toEqual([
      tag(1, 2), ...str('pvc-1'),
      ...sub(2, [tag(1, 0), 0x80, 0x08]), // required_bytes = 1024 as a varint
      // VolumeCapability: mount is 2 (MountVolume fs_type 1), access_mode 3 (mode 1)
      ...sub(3, [...sub(2, [tag(1, 2), ...str('ext4')]), ...sub(3, [tag(1, 0), 1])]),
      // block is 1, an empty message still sent so the oneof is set
      ...sub(3, [...sub(1, []), ...sub(3, [tag(1, 0), 5])]),
      ...entry(4, 'type', 'thin'),
      ...entry(5, 'key', 'k'),
      // VolumeContentSource: snapshot is 1 (SnapshotSource snapshot_id 1)
      ...sub(6, sub(1, [tag(1, 2), ...str('snap-1')])),
    ]);
    const back = CreateVolumeRequest.decode(b);
    expect(back.volumeCapabilities[1]?.block).toEqual({});
    expect(back.volumeCapabilities[1]?.mount).toBeUndefined();
    expect(back.volumeContentSource).toEqual({ snapshot: { snapshotId: 'snap-1' } });
    expect(back.capacityRange?.requiredBytes).toBe(1024n);
  });

  it('NodeStageVolumeRequest: volume_id 1, publish_context 2, staging_target_path 3, volume_capability 4, volume_context 6', () => {
    const b = NodeStageVolumeRequest.encode(
      NodeStageVolumeRequest.fromPartial({
        volumeId: 'v',
        publishContext: { a: 'b' },
        stagingTargetPath: '/s',
        volumeCapability: {
          mount: { fsType: 'xfs', mountFlags: ['noatime'], volumeMountGroup: '1000' },
          accessMode: { mode: VolumeCapability_AccessMode_Mode.SINGLE_NODE_SINGLE_WRITER },
        },
        volumeContext: { c: 'd' },
      }),
    ).finish();
    expect(bytes(b)).toEqual([
      tag(1, 2), ...str('v'),
      ...entry(2, 'a', 'b'),
      tag(3, 2), ...str('/s'),
      // MountVolume: fs_type 1, mount_flags 2, volume_mount_group 3; SINGLE_NODE_SINGLE_WRITER is 6
      ...sub(4, [...sub(2, [tag(1, 2), ...str('xfs'), tag(2, 2), ...str('noatime'), tag(3, 2), ...str('1000')]), ...sub(3, [tag(1, 0), 6])]),
      ...entry(6, 'c', 'd'),
    ]);
  });

  it('NodeGetVolumeStatsResponse: usage 1 (available 1, total 2, used 3, unit 4), volume_condition 2 (abnormal 1, message 2)', () => {
    const b = NodeGetVolumeStatsResponse.encode(
      NodeGetVolumeStatsResponse.fromPartial({
        usage: [
          { available: 10n, total: 20n, used: 10n, unit: VolumeUsage_Unit.BYTES },
          { available: 5n, total: 6n, used: 1n, unit: VolumeUsage_Unit.INODES },
        ],
        volumeCondition: { abnormal: true, message: 'ro' },
      }),
    ).finish();
    expect(bytes(b)).toEqual([
      ...sub(1, [tag(1, 0), 10, tag(2, 0), 20, tag(3, 0), 10, tag(4, 0), 1]),
      ...sub(1, [tag(1, 0), 5, tag(2, 0), 6, tag(3, 0), 1, tag(4, 0), 2]),
      ...sub(2, [tag(1, 0), 1, tag(2, 2), ...str('ro')]),
    ]);
    const big = 2n ** 40n; // volumes past 2^53 bytes exist in principle; int64 must survive as bigint
    const back = NodeGetVolumeStatsResponse.decode(NodeGetVolumeStatsResponse.encode({ usage: [{ available: big, total: big, used: 0n, unit: VolumeUsage_Unit.BYTES }] }).finish());
    expect(back.usage[0]?.total).toBe(big);
  });

  it('ProbeResponse ready is a BoolValue: unset (ready) and an explicit false differ on the wire', () => {
    expect(bytes(ProbeResponse.encode({}).finish())).toEqual([]);
    expect(bytes(ProbeResponse.encode({ ready: false }).finish())).toEqual(sub(1, []));
    expect(bytes(ProbeResponse.encode({ ready: true }).finish())).toEqual(sub(1, [tag(1, 0), 1]));
    expect(ProbeResponse.decode(Uint8Array.from(sub(1, []))).ready).toBe(false);
  });

  it('GroupController: CreateVolumeGroupSnapshotRequest name 1, source_volume_ids 2, secrets 3; VolumeGroupSnapshot creation_time 3, ready_to_use 4', () => {
    const b = CreateVolumeGroupSnapshotRequest.encode(
      CreateVolumeGroupSnapshotRequest.fromPartial({ name: 'g', sourceVolumeIds: ['a', 'b'], secrets: { s: 'x' }, parameters: { p: 'q' } }),
    ).finish();
    expect(bytes(b)).toEqual([tag(1, 2), ...str('g'), tag(2, 2), ...str('a'), tag(2, 2), ...str('b'), ...entry(3, 's', 'x'), ...entry(4, 'p', 'q')]);
    const snap = VolumeGroupSnapshot.encode(
      VolumeGroupSnapshot.fromPartial({ groupSnapshotId: 'g1', snapshots: [{ snapshotId: 's1', groupSnapshotId: 'g1' }], creationTime: { seconds: 1n }, readyToUse: true }),
    ).finish();
    // Snapshot: snapshot_id 2, group_snapshot_id 6
    expect(bytes(snap)).toEqual([
      tag(1, 2), ...str('g1'),
      ...sub(2, [tag(2, 2), ...str('s1'), tag(6, 2), ...str('g1')]),
      ...sub(3, [tag(1, 0), 1]),
      tag(4, 0), 1,
    ]);
  });

  it('capability enum numbers and gRPC method paths are upstream\'s', () => {
    expect(PluginCapability_Service_Type.GROUP_CONTROLLER_SERVICE).toBe(3);
    expect(ControllerServiceCapability_RPC_Type.MODIFY_VOLUME).toBe(14);
    expect(ControllerServiceCapability_RPC_Type.GET_SNAPSHOT).toBe(15);
    expect(NodeServiceCapability_RPC_Type.VOLUME_MOUNT_GROUP).toBe(6);
    expect(GroupControllerServiceCapability_RPC_Type.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT).toBe(1);
    expect(IdentityService.getPluginInfo.path).toBe('/csi.v1.Identity/GetPluginInfo');
    expect(NodeService.nodeStageVolume.path).toBe('/csi.v1.Node/NodeStageVolume');
    expect(GroupControllerService.createVolumeGroupSnapshot.path).toBe('/csi.v1.GroupController/CreateVolumeGroupSnapshot');
  });

  describe('served over a unix socket', () => {
    let dir = '';
    let served: UnixServer | undefined;
    let client: IdentityClient | undefined;
    afterEach(async () => {
      client?.close();
      await served?.close();
      served = undefined;
      client = undefined;
      rmSync(dir, { recursive: true, force: true });
    });

    it('Identity.GetPluginInfo answers the generated client with name, vendor_version and manifest', async () => {
      dir = mkdtempSync(join(tmpdir(), 'berth-csi-wire-'));
      const socket = join(dir, 'csi.sock');
      served = await serveUnix(socket, [
        [IdentityService, { getPluginInfo: unary('GetPluginInfo', async () => ({ name: 'csi.berth.dev', vendorVersion: '0.1.0', manifest: { commit: 'abc' } })) }],
      ]);
      client = unixClient(IdentityClient, socket);
      const res = await callUnary(client.getPluginInfo.bind(client), {});
      expect(res).toEqual({ name: 'csi.berth.dev', vendorVersion: '0.1.0', manifest: { commit: 'abc' } });
    });
  });

  it('proto/gen/csi.ts is what scripts/gen-proto.sh generates from proto/csi', (ctx) => {
    if (spawnSync('protoc', ['--version']).status !== 0) {
      console.log('skipped: protoc is not installed (apt-get install protobuf-compiler)');
      ctx.skip();
    }
    const out = mkdtempSync(join(tmpdir(), 'berth-gen-'));
    try {
      execFileSync('bash', [join(repoRoot, 'scripts/gen-proto.sh'), out], { cwd: repoRoot, stdio: 'pipe' });
      // The well-known types it imports (google/protobuf/*) are checked by containerd-wire.
      const file = 'csi.ts';
      expect(readFileSync(join(out, file), 'utf8')).toBe(readFileSync(join(repoRoot, 'proto/gen', file), 'utf8'));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
