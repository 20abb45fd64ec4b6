import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, statfsSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GrpcStatus } from '../../../lib/errors.js';
import { attachLoopAndMount } from '../../../lib/loop.js';
import {
  GroupControllerServiceCapability_RPC_Type as GroupRpc,
  type CreateSnapshotRequest,
  type CreateVolumeGroupSnapshotRequest,
  type CreateVolumeRequest,
  type DeepPartial,
  type Snapshot,
  type Volume,
  type VolumeCapability,
  type VolumeGroupSnapshot,
} from '../../../proto/gen/csi.js';
import { blockCap, CsiDriver, MiB, mountCap, releaseUnder } from '../../../world/csi.js';
import { expectStatus, fillWithData, until, useCsiDriver } from '../../../world/csi-suite.js';
import { isRoot } from '../../../world/netns.js';

// Snapshots, restores, clones and group snapshots of berth-csi over real gRPC: the data tests
// stage and publish real ext4/xfs images through the node service, write a file, and read it
// back from the copy. Every test removes what it made in afterEach (mounts first).

const mib = (n: number): bigint => BigInt(n * MiB);

describe.runIf(isRoot)('berth-csi snapshots', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x));

  let volumes: string[] = [];
  let snapshots: string[] = [];
  let groups: VolumeGroupSnapshot[] = [];
  let mounted: { volumeId: string; staging: string; target: string }[] = [];

  afterEach(async () => {
    for (const m of mounted.reverse()) {
      await d.node.nodeUnpublishVolume({ volumeId: m.volumeId, targetPath: m.target });
      await d.node.nodeUnstageVolume({ volumeId: m.volumeId, stagingTargetPath: m.staging });
    }
    for (const g of groups) await d.group.deleteVolumeGroupSnapshot({ groupSnapshotId: g.groupSnapshotId, snapshotIds: g.snapshots.map((s) => s.snapshotId) });
    for (const id of snapshots) await d.controller.deleteSnapshot({ snapshotId: id });
    for (const id of volumes) await d.controller.deleteVolume({ volumeId: id });
    volumes = [];
    snapshots = [];
    groups = [];
    mounted = [];
  });

  async function createVolume(req: DeepPartial<CreateVolumeRequest>): Promise<Volume> {
    const { volume } = await d.controller.createVolume({ volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: mib(32) }, ...req });
    volumes.push(volume!.volumeId);
    return volume!;
  }

  /** A 1 MiB block volume: no mkfs, the cheapest source for listing tests. */
  const blockVolume = (name: string, bytes = MiB): Promise<Volume> => createVolume({ name, volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(bytes) } });

  async function createSnapshot(req: DeepPartial<CreateSnapshotRequest>): Promise<Snapshot> {
    const { snapshot } = await d.controller.createSnapshot(req);
    snapshots.push(snapshot!.snapshotId);
    return snapshot!;
  }

  async function createGroup(req: DeepPartial<CreateVolumeGroupSnapshotRequest>): Promise<VolumeGroupSnapshot> {
    const { groupSnapshot } = await d.group.createVolumeGroupSnapshot(req);
    groups.push(groupSnapshot!);
    return groupSnapshot!;
  }

  /** Stage and publish a volume as kubelet would; returns the pod's target path. */
  async function mountVolume(volumeId: string, name: string, cap: DeepPartial<VolumeCapability> = mountCap()): Promise<string> {
    const staging = d.path(`stage-${name}`);
    const target = d.path(`pod-${name}/target`);
    await d.node.nodeStageVolume({ volumeId, stagingTargetPath: staging, volumeCapability: cap });
    mounted.push({ volumeId, staging, target });
    await d.node.nodePublishVolume({ volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: cap });
    return target;
  }

  const snapshotFile = (id: string): string => join(d.root, 'snapshots', `${id}.img`);

  describe('CreateSnapshot', () => {
    it('a snapshot is ready to use at once, with the volume\'s size, its source and its creation time', async () => {
      const vol = await createVolume({ name: 'snap-src' });
      const before = Date.now();
      const snap = await createSnapshot({ name: 'snap-1', sourceVolumeId: vol.volumeId });
      const after = Date.now();
      expect(snap.snapshotId).toMatch(/^snap-/);
      expect(snap.readyToUse).toBe(true);
      expect(snap.sizeBytes).toBe(mib(32));
      expect(snap.sourceVolumeId).toBe(vol.volumeId);
      expect(snap.groupSnapshotId).toBe('');
      const ms = Number(snap.creationTime!.seconds) * 1000 + snap.creationTime!.nanos / 1e6;
      expect(ms).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      expect(ms).toBeLessThanOrEqual(after);
      expect(statSync(snapshotFile(snap.snapshotId)).size).toBe(32 * MiB);
      expect(execFileSync('blkid', ['-p', '-o', 'value', '-s', 'TYPE', snapshotFile(snap.snapshotId)], { encoding: 'utf8' }).trim()).toBe('ext4');
    });

    it('the same name and source twice answers the same snapshot and copies once', async () => {
      const vol = await blockVolume('snap-idem-src');
      const first = await createSnapshot({ name: 'snap-idem', sourceVolumeId: vol.volumeId });
      const files = readdirSync(join(d.root, 'snapshots')).length;
      const again = await createSnapshot({ name: 'snap-idem', sourceVolumeId: vol.volumeId });
      expect(again).toEqual(first);
      expect(readdirSync(join(d.root, 'snapshots')).length).toBe(files);
    });

    it('the same name for another source volume is ALREADY_EXISTS naming name', async () => {
      const a = await blockVolume('snap-name-a');
      const b = await blockVolume('snap-name-b');
      await createSnapshot({ name: 'snap-taken', sourceVolumeId: a.volumeId });
      await expectStatus(d.controller.createSnapshot({ name: 'snap-taken', sourceVolumeId: b.volumeId }), GrpcStatus.ALREADY_EXISTS, /^name: .*another volume/);
    });

    it('an unknown source volume is NOT_FOUND naming source_volume_id', async () => {
      await expectStatus(d.controller.createSnapshot({ name: 'snap-orphan', sourceVolumeId: 'vol-unknown' }), GrpcStatus.NOT_FOUND, /^source_volume_id: /);
    });

    it('a missing name or source is INVALID_ARGUMENT naming the field', async () => {
      const vol = await blockVolume('snap-args');
      await expectStatus(d.controller.createSnapshot({ sourceVolumeId: vol.volumeId }), GrpcStatus.INVALID_ARGUMENT, /^name: is required/);
      await expectStatus(d.controller.createSnapshot({ name: 'snap-nosrc' }), GrpcStatus.INVALID_ARGUMENT, /^source_volume_id: is required/);
      await expectStatus(d.controller.createSnapshot({ name: 'snap-badsrc', sourceVolumeId: '../vol' }), GrpcStatus.INVALID_ARGUMENT, /^source_volume_id: /);
    });

    it('an unknown parameter is INVALID_ARGUMENT naming it; csi.storage.k8s.io/ ones are accepted', async () => {
      const vol = await blockVolume('snap-params');
      await expectStatus(d.controller.createSnapshot({ name: 'snap-p', sourceVolumeId: vol.volumeId, parameters: { speed: 'fast' } }), GrpcStatus.INVALID_ARGUMENT, 'parameters.speed');
      const snap = await createSnapshot({ name: 'snap-p', sourceVolumeId: vol.volumeId, parameters: { 'csi.storage.k8s.io/volumesnapshot/name': 'x' } });
      expect(snap.readyToUse).toBe(true);
    });

    it('a directory volume is snapshotted as a directory holding its files', async () => {
      const vol = await createVolume({ name: 'snap-dir', parameters: { type: 'directory', sizeEnforcement: 'unenforced' } });
      writeFileSync(join(d.root, 'volumes', vol.volumeId, 'file'), 'in the directory');
      const snap = await createSnapshot({ name: 'snap-dir-1', sourceVolumeId: vol.volumeId });
      expect(readFileSync(join(d.root, 'snapshots', snap.snapshotId, 'file'), 'utf8')).toBe('in the directory');
    });

    it('a volume whose backing file is gone cannot be snapshotted: FAILED_PRECONDITION, and no snapshot is left', async () => {
      const vol = await blockVolume('snap-gone');
      rmSync(join(d.root, 'volumes', `${vol.volumeId}.img`));
      await expectStatus(d.controller.createSnapshot({ name: 'snap-of-gone', sourceVolumeId: vol.volumeId }), GrpcStatus.FAILED_PRECONDITION, /is gone/);
      expect((await d.controller.listSnapshots({ sourceVolumeId: vol.volumeId })).entries).toEqual([]);
    });
  });

  describe('data', () => {
    it('a volume restored from a snapshot of a mounted ext4 volume reads the content at snapshot time', async () => {
      const src = await createVolume({ name: 'data-src' });
      const srcTarget = await mountVolume(src.volumeId, 'data-src');
      writeFileSync(join(srcTarget, 'file'), 'original');
      const snap = await createSnapshot({ name: 'data-snap', sourceVolumeId: src.volumeId });
      writeFileSync(join(srcTarget, 'file'), 'overwritten');

      const restored = await createVolume({ name: 'data-restored', volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } } });
      expect(restored.contentSource).toEqual({ snapshot: { snapshotId: snap.snapshotId } });
      expect(restored.capacityBytes).toBe(mib(32));
      const target = await mountVolume(restored.volumeId, 'data-restored');
      expect(readFileSync(join(target, 'file'), 'utf8')).toBe('original');
      expect(readFileSync(join(srcTarget, 'file'), 'utf8')).toBe('overwritten');
    });

    it('a clone of a mounted ext4 volume reads the content at clone time, and names its source', async () => {
      const src = await createVolume({ name: 'clone-src' });
      const srcTarget = await mountVolume(src.volumeId, 'clone-src');
      writeFileSync(join(srcTarget, 'file'), 'original');
      const clone = await createVolume({ name: 'clone', volumeContentSource: { volume: { volumeId: src.volumeId } } });
      writeFileSync(join(srcTarget, 'file'), 'overwritten');
      expect(clone.contentSource).toEqual({ volume: { volumeId: src.volumeId } });
      expect((await d.controller.controllerGetVolume({ volumeId: clone.volumeId })).volume!.contentSource).toEqual({ volume: { volumeId: src.volumeId } });
      const target = await mountVolume(clone.volumeId, 'clone');
      expect(readFileSync(join(target, 'file'), 'utf8')).toBe('original');
    });

    // Copies of an xfs image share its UUID, and the kernel refuses to mount a second xfs with
    // a UUID already mounted unless the mount says nouuid.
    it('a clone of a staged xfs volume (same XFS UUID) can be staged while its source is, and reads the content at clone time', async () => {
      const req = { parameters: { fsType: 'xfs' }, capacityRange: { requiredBytes: mib(300) } };
      const src = await createVolume({ name: 'xfs-src', ...req });
      const srcTarget = await mountVolume(src.volumeId, 'xfs-src');
      writeFileSync(join(srcTarget, 'file'), 'original');
      const clone = await createVolume({ name: 'xfs-clone', ...req, volumeContentSource: { volume: { volumeId: src.volumeId } } });
      const target = await mountVolume(clone.volumeId, 'xfs-clone');
      expect(readFileSync(join(target, 'file'), 'utf8')).toBe('original');
    });

    it('a snapshot of a staged block volume holds what was written to its device', async () => {
      const vol = await blockVolume('blk-data', 4 * MiB);
      const device = await mountVolume(vol.volumeId, 'blk-data', blockCap());
      const payload = Buffer.from('written through the device');
      // The writer keeps the device open, as a pod would: its writes sit in the page cache.
      const fd = openSync(device, 'r+');
      let snap: Snapshot;
      try {
        writeSync(fd, payload, 0, payload.length, MiB);
        snap = await createSnapshot({ name: 'blk-data-snap', sourceVolumeId: vol.volumeId });
      } finally {
        closeSync(fd);
      }
      const copy = Buffer.alloc(payload.length);
      const sfd = openSync(snapshotFile(snap.snapshotId), 'r');
      try {
        readSync(sfd, copy, 0, copy.length, MiB);
      } finally {
        closeSync(sfd);
      }
      expect(copy.toString()).toBe(payload.toString());
    });

    it('a restore asking less than the snapshot gets the snapshot\'s size', async () => {
      const vol = await blockVolume('small-src', 8 * MiB);
      const snap = await createSnapshot({ name: 'small-snap', sourceVolumeId: vol.volumeId });
      const restored = await createVolume({ name: 'small-restored', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: mib(2) }, volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } } });
      expect(restored.capacityBytes).toBe(mib(8));
      expect(statSync(join(d.root, 'volumes', `${restored.volumeId}.img`)).size).toBe(8 * MiB);
    });

    it('a restore whose limit is below the snapshot\'s size is OUT_OF_RANGE naming limit_bytes', async () => {
      const vol = await blockVolume('limit-src', 8 * MiB);
      const snap = await createSnapshot({ name: 'limit-snap', sourceVolumeId: vol.volumeId });
      await expectStatus(
        d.controller.createVolume({ name: 'limit-restored', volumeCapabilities: [blockCap()], capacityRange: { limitBytes: mib(4) }, volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } } }),
        GrpcStatus.OUT_OF_RANGE,
        /^capacity_range.limit_bytes: .*smaller than the source/,
      );
    });

    it('a restore into a larger volume grows the image', async () => {
      const vol = await createVolume({ name: 'grow-src' });
      const snap = await createSnapshot({ name: 'grow-snap', sourceVolumeId: vol.volumeId });
      const restored = await createVolume({ name: 'grow-restored', capacityRange: { requiredBytes: mib(48) }, volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } } });
      expect(restored.capacityBytes).toBe(mib(48));
      expect(statSync(join(d.root, 'volumes', `${restored.volumeId}.img`)).size).toBe(48 * MiB);
    });

    it('a filesystem snapshot restored as a block volume (or as xfs) is INVALID_ARGUMENT naming volume_content_source', async () => {
      const vol = await createVolume({ name: 'kind-src' });
      const snap = await createSnapshot({ name: 'kind-snap', sourceVolumeId: vol.volumeId });
      const source = { snapshot: { snapshotId: snap.snapshotId } };
      await expectStatus(d.controller.createVolume({ name: 'kind-block', volumeCapabilities: [blockCap()], volumeContentSource: source }), GrpcStatus.INVALID_ARGUMENT, /^volume_content_source: .*filesystem \(ext4\).*not a block/);
      await expectStatus(
        d.controller.createVolume({ name: 'kind-xfs', parameters: { fsType: 'xfs' }, volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: mib(300) }, volumeContentSource: source }),
        GrpcStatus.INVALID_ARGUMENT,
        /^volume_content_source: /,
      );
    });

    it('an unknown snapshot as source is NOT_FOUND naming volume_content_source.snapshot.snapshot_id', async () => {
      await expectStatus(
        d.controller.createVolume({ name: 'no-snap', volumeCapabilities: [mountCap()], volumeContentSource: { snapshot: { snapshotId: 'snap-unknown' } } }),
        GrpcStatus.NOT_FOUND,
        /^volume_content_source.snapshot.snapshot_id: /,
      );
    });

    it('CreateVolume from a snapshot again answers the same volume; from another snapshot it is ALREADY_EXISTS', async () => {
      const vol = await blockVolume('idem-src');
      const s1 = await createSnapshot({ name: 'idem-s1', sourceVolumeId: vol.volumeId });
      const s2 = await createSnapshot({ name: 'idem-s2', sourceVolumeId: vol.volumeId });
      const req = { name: 'idem-restored', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: mib(1) }, volumeContentSource: { snapshot: { snapshotId: s1.snapshotId } } };
      const first = await createVolume(req);
      expect((await createVolume(req)).volumeId).toBe(first.volumeId);
      await expectStatus(d.controller.createVolume({ ...req, volumeContentSource: { snapshot: { snapshotId: s2.snapshotId } } }), GrpcStatus.ALREADY_EXISTS, /^name: .*content source/);
    });

    it('DeleteSnapshot of a snapshot being restored is ABORTED, and the restore completes', async () => {
      // A source full of data, so the copy into <id>.img.partial takes long enough to be seen.
      const size = 64 * MiB;
      const vol = await blockVolume('busy-src', size);
      fillWithData(join(d.root, 'volumes', `${vol.volumeId}.img`), size);
      const snap = await createSnapshot({ name: 'busy-snap', sourceVolumeId: vol.volumeId });
      const restoring = d.controller.createVolume({
        name: 'busy-restored',
        volumeCapabilities: [blockCap()],
        capacityRange: { requiredBytes: BigInt(size) },
        volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } },
      });
      restoring.then((r) => volumes.push(r.volume!.volumeId), () => undefined);
      await until(() => readdirSync(join(d.root, 'volumes')).some((n) => n.endsWith('.partial')));
      await expectStatus(d.controller.deleteSnapshot({ snapshotId: snap.snapshotId }), GrpcStatus.ABORTED, snap.snapshotId);
      const { volume } = await restoring;
      expect(volume!.contentSource).toEqual({ snapshot: { snapshotId: snap.snapshotId } });
      expect(existsSync(snapshotFile(snap.snapshotId))).toBe(true);
    });
  });

  describe('DeleteSnapshot', () => {
    it('DeleteSnapshot of an unknown ID succeeds and changes nothing', async () => {
      const before = readdirSync(join(d.root, 'snapshots'));
      await d.controller.deleteSnapshot({ snapshotId: 'snap-000000000000-none' });
      expect(readdirSync(join(d.root, 'snapshots'))).toEqual(before);
    });

    it('a missing or malformed ID is INVALID_ARGUMENT naming snapshot_id', async () => {
      await expectStatus(d.controller.deleteSnapshot({}), GrpcStatus.INVALID_ARGUMENT, /^snapshot_id: is required/);
      await expectStatus(d.controller.deleteSnapshot({ snapshotId: '../state' }), GrpcStatus.INVALID_ARGUMENT, /^snapshot_id: /);
    });

    it('deleting removes the file under <root>/snapshots and the record, and leaves the source volume', async () => {
      const vol = await blockVolume('del-src');
      const snap = await createSnapshot({ name: 'del-snap', sourceVolumeId: vol.volumeId });
      expect(existsSync(snapshotFile(snap.snapshotId))).toBe(true);
      await d.controller.deleteSnapshot({ snapshotId: snap.snapshotId });
      expect(existsSync(snapshotFile(snap.snapshotId))).toBe(false);
      await expectStatus(d.controller.getSnapshot({ snapshotId: snap.snapshotId }), GrpcStatus.NOT_FOUND, 'snapshot_id');
      expect(existsSync(join(d.root, 'volumes', `${vol.volumeId}.img`))).toBe(true);
      await d.controller.deleteSnapshot({ snapshotId: snap.snapshotId });
    });

    it('a snapshot outlives its source volume and can still be restored', async () => {
      const vol = await blockVolume('outlive-src', 2 * MiB);
      const snap = await createSnapshot({ name: 'outlive-snap', sourceVolumeId: vol.volumeId });
      await d.controller.deleteVolume({ volumeId: vol.volumeId });
      const restored = await createVolume({ name: 'outlive-restored', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: mib(2) }, volumeContentSource: { snapshot: { snapshotId: snap.snapshotId } } });
      expect(restored.capacityBytes).toBe(mib(2));
      expect((await d.controller.getSnapshot({ snapshotId: snap.snapshotId })).snapshot!.sourceVolumeId).toBe(vol.volumeId);
    });
  });

  describe('ListSnapshots and GetSnapshot', () => {
    /** Two volumes with two and one snapshots. */
    async function fixture(prefix: string): Promise<{ a: Volume; b: Volume; snaps: Snapshot[] }> {
      const a = await blockVolume(`${prefix}-a`);
      const b = await blockVolume(`${prefix}-b`);
      const snaps = [
        await createSnapshot({ name: `${prefix}-a1`, sourceVolumeId: a.volumeId }),
        await createSnapshot({ name: `${prefix}-a2`, sourceVolumeId: a.volumeId }),
        await createSnapshot({ name: `${prefix}-b1`, sourceVolumeId: b.volumeId }),
      ];
      return { a, b, snaps };
    }
    const ids = (entries: { snapshot?: Snapshot }[]): string[] => entries.map((e) => e.snapshot!.snapshotId);

    it('with no filter, every snapshot is listed and there is no next token', async () => {
      const { snaps } = await fixture('list-all');
      const res = await d.controller.listSnapshots({});
      expect(res.nextToken).toBe('');
      expect(ids(res.entries)).toEqual(expect.arrayContaining(snaps.map((s) => s.snapshotId)));
      expect(res.entries.find((e) => e.snapshot!.snapshotId === snaps[0]!.snapshotId)!.snapshot).toEqual(snaps[0]);
    });

    it('snapshot_id filters to that snapshot; an unknown one gives an empty list', async () => {
      const { snaps } = await fixture('list-id');
      expect(ids((await d.controller.listSnapshots({ snapshotId: snaps[1]!.snapshotId })).entries)).toEqual([snaps[1]!.snapshotId]);
      expect(await d.controller.listSnapshots({ snapshotId: 'snap-unknown' })).toEqual({ entries: [], nextToken: '' });
    });

    it('source_volume_id filters to that volume\'s snapshots; an unknown one gives an empty list', async () => {
      const { a, b, snaps } = await fixture('list-src');
      expect(ids((await d.controller.listSnapshots({ sourceVolumeId: a.volumeId })).entries)).toEqual([snaps[0]!.snapshotId, snaps[1]!.snapshotId]);
      expect(ids((await d.controller.listSnapshots({ sourceVolumeId: b.volumeId })).entries)).toEqual([snaps[2]!.snapshotId]);
      expect(ids((await d.controller.listSnapshots({ sourceVolumeId: a.volumeId, snapshotId: snaps[2]!.snapshotId })).entries)).toEqual([]);
      expect(await d.controller.listSnapshots({ sourceVolumeId: 'vol-unknown' })).toEqual({ entries: [], nextToken: '' });
    });

    it('max_entries 2 gives a page of 2 and a token for the rest; together they are every snapshot once', async () => {
      await fixture('list-page');
      const all = ids((await d.controller.listSnapshots({})).entries);
      const first = await d.controller.listSnapshots({ maxEntries: 2 });
      expect(first.entries).toHaveLength(2);
      expect(first.nextToken).not.toBe('');
      const rest = await d.controller.listSnapshots({ startingToken: first.nextToken });
      expect(rest.nextToken).toBe('');
      expect([...ids(first.entries), ...ids(rest.entries)]).toEqual(all);
    });

    it('a starting token the driver did not issue is ABORTED naming starting_token; a negative max_entries is INVALID_ARGUMENT', async () => {
      await expectStatus(d.controller.listSnapshots({ startingToken: 'invalid-token' }), GrpcStatus.ABORTED, /^starting_token: /);
      await expectStatus(d.controller.listSnapshots({ maxEntries: -2 }), GrpcStatus.INVALID_ARGUMENT, /^max_entries: /);
    });

    it('GetSnapshot answers the snapshot as CreateSnapshot did; an unknown one is NOT_FOUND naming snapshot_id', async () => {
      const { snaps } = await fixture('get');
      expect((await d.controller.getSnapshot({ snapshotId: snaps[2]!.snapshotId })).snapshot).toEqual(snaps[2]);
      await expectStatus(d.controller.getSnapshot({ snapshotId: 'snap-unknown' }), GrpcStatus.NOT_FOUND, /^snapshot_id: /);
      await expectStatus(d.controller.getSnapshot({}), GrpcStatus.INVALID_ARGUMENT, /^snapshot_id: /);
    });
  });

  describe('group snapshots', () => {
    it('GroupControllerGetCapabilities offers CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT', async () => {
      const { capabilities } = await d.group.groupControllerGetCapabilities();
      expect(capabilities.map((c) => c.rpc!.type)).toEqual([GroupRpc.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT]);
    });

    it('a group snapshot of two volumes has two ready member snapshots that name the group', async () => {
      const a = await blockVolume('grp-a', 2 * MiB);
      const b = await blockVolume('grp-b', 3 * MiB);
      const group = await createGroup({ name: 'grp', sourceVolumeIds: [a.volumeId, b.volumeId] });
      expect(group.groupSnapshotId).toMatch(/^group-/);
      expect(group.readyToUse).toBe(true);
      expect(group.snapshots).toHaveLength(2);
      expect(group.snapshots.map((s) => s.sourceVolumeId).sort()).toEqual([a.volumeId, b.volumeId].sort());
      for (const s of group.snapshots) {
        expect(s.groupSnapshotId).toBe(group.groupSnapshotId);
        expect(s.readyToUse).toBe(true);
        expect(existsSync(snapshotFile(s.snapshotId))).toBe(true);
      }
      expect(group.snapshots.find((s) => s.sourceVolumeId === b.volumeId)!.sizeBytes).toBe(mib(3));
      const listed = await d.controller.getSnapshot({ snapshotId: group.snapshots[0]!.snapshotId });
      expect(listed.snapshot!.groupSnapshotId).toBe(group.groupSnapshotId);
    });

    it('the same name and volumes again answers the same group; another set of volumes is ALREADY_EXISTS naming name', async () => {
      const a = await blockVolume('grp-idem-a');
      const b = await blockVolume('grp-idem-b');
      const c = await blockVolume('grp-idem-c');
      const group = await createGroup({ name: 'grp-idem', sourceVolumeIds: [a.volumeId, b.volumeId] });
      const again = await d.group.createVolumeGroupSnapshot({ name: 'grp-idem', sourceVolumeIds: [b.volumeId, a.volumeId] });
      expect(again.groupSnapshot).toEqual(group);
      await expectStatus(d.group.createVolumeGroupSnapshot({ name: 'grp-idem', sourceVolumeIds: [a.volumeId, c.volumeId] }), GrpcStatus.ALREADY_EXISTS, /^name: /);
    });

    it('an unknown member volume is NOT_FOUND naming it, and no member snapshot is left behind', async () => {
      const a = await blockVolume('grp-missing-a');
      const before = readdirSync(join(d.root, 'snapshots'));
      await expectStatus(d.group.createVolumeGroupSnapshot({ name: 'grp-missing', sourceVolumeIds: [a.volumeId, 'vol-unknown'] }), GrpcStatus.NOT_FOUND, /^source_volume_ids\[1\]: /);
      expect(readdirSync(join(d.root, 'snapshots'))).toEqual(before);
      expect((await d.controller.listSnapshots({ sourceVolumeId: a.volumeId })).entries).toEqual([]);
    });

    it('a missing name, no volumes or a volume listed twice is INVALID_ARGUMENT naming the field', async () => {
      const a = await blockVolume('grp-args');
      await expectStatus(d.group.createVolumeGroupSnapshot({ sourceVolumeIds: [a.volumeId] }), GrpcStatus.INVALID_ARGUMENT, /^name: /);
      await expectStatus(d.group.createVolumeGroupSnapshot({ name: 'grp-empty' }), GrpcStatus.INVALID_ARGUMENT, /^source_volume_ids: /);
      await expectStatus(d.group.createVolumeGroupSnapshot({ name: 'grp-twice', sourceVolumeIds: [a.volumeId, a.volumeId] }), GrpcStatus.INVALID_ARGUMENT, /^source_volume_ids: .*twice/);
    });

    it('DeleteSnapshot of a group member is FAILED_PRECONDITION naming snapshot_id, and the member stays', async () => {
      const a = await blockVolume('grp-member-a');
      const b = await blockVolume('grp-member-b');
      const group = await createGroup({ name: 'grp-member', sourceVolumeIds: [a.volumeId, b.volumeId] });
      const member = group.snapshots[0]!.snapshotId;
      await expectStatus(d.controller.deleteSnapshot({ snapshotId: member }), GrpcStatus.FAILED_PRECONDITION, /^snapshot_id: .*group snapshot/);
      expect(existsSync(snapshotFile(member))).toBe(true);
    });

    it('GetVolumeGroupSnapshot answers the group; unknown is NOT_FOUND, mismatched snapshot_ids INVALID_ARGUMENT', async () => {
      const a = await blockVolume('grp-get-a');
      const b = await blockVolume('grp-get-b');
      const group = await createGroup({ name: 'grp-get', sourceVolumeIds: [a.volumeId, b.volumeId] });
      const members = group.snapshots.map((s) => s.snapshotId);
      expect((await d.group.getVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId })).groupSnapshot).toEqual(group);
      expect((await d.group.getVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId, snapshotIds: [...members].reverse() })).groupSnapshot).toEqual(group);
      await expectStatus(d.group.getVolumeGroupSnapshot({ groupSnapshotId: 'group-unknown' }), GrpcStatus.NOT_FOUND, /^group_snapshot_id: /);
      await expectStatus(d.group.getVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId, snapshotIds: [members[0]!] }), GrpcStatus.INVALID_ARGUMENT, /^snapshot_ids: /);
    });

    it('DeleteVolumeGroupSnapshot removes every member; again, or of an unknown group, it succeeds', async () => {
      const a = await blockVolume('grp-del-a');
      const b = await blockVolume('grp-del-b');
      const group = await createGroup({ name: 'grp-del', sourceVolumeIds: [a.volumeId, b.volumeId] });
      const members = group.snapshots.map((s) => s.snapshotId);
      await expectStatus(d.group.deleteVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId }), GrpcStatus.INVALID_ARGUMENT, /^snapshot_ids: is required/);
      await d.group.deleteVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId, snapshotIds: members });
      for (const id of members) {
        expect(existsSync(snapshotFile(id))).toBe(false);
        await expectStatus(d.controller.getSnapshot({ snapshotId: id }), GrpcStatus.NOT_FOUND, 'snapshot_id');
      }
      await expectStatus(d.group.getVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId }), GrpcStatus.NOT_FOUND, 'group_snapshot_id');
      await d.group.deleteVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId, snapshotIds: members });
      await d.group.deleteVolumeGroupSnapshot({ groupSnapshotId: 'group-000000000000-none', snapshotIds: ['snap-x'] });
    });

    it('a member snapshot restores like any other snapshot', async () => {
      const a = await blockVolume('grp-restore-a', 2 * MiB);
      const b = await blockVolume('grp-restore-b');
      const group = await createGroup({ name: 'grp-restore', sourceVolumeIds: [a.volumeId, b.volumeId] });
      const member = group.snapshots.find((s) => s.sourceVolumeId === a.volumeId)!;
      const restored = await createVolume({ name: 'grp-restored', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: mib(2) }, volumeContentSource: { snapshot: { snapshotId: member.snapshotId } } });
      expect(restored.contentSource).toEqual({ snapshot: { snapshotId: member.snapshotId } });
    });

    it('DeleteVolumeGroupSnapshot while a member is being restored is ABORTED, and the restore completes', async () => {
      const size = 64 * MiB;
      const a = await blockVolume('grp-busy-a', size);
      const b = await blockVolume('grp-busy-b');
      fillWithData(join(d.root, 'volumes', `${a.volumeId}.img`), size);
      const group = await createGroup({ name: 'grp-busy', sourceVolumeIds: [a.volumeId, b.volumeId] });
      const member = group.snapshots.find((s) => s.sourceVolumeId === a.volumeId)!;
      const restoring = d.controller.createVolume({
        name: 'grp-busy-restored',
        volumeCapabilities: [blockCap()],
        capacityRange: { requiredBytes: BigInt(size) },
        volumeContentSource: { snapshot: { snapshotId: member.snapshotId } },
      });
      restoring.then((r) => volumes.push(r.volume!.volumeId), () => undefined);
      await until(() => readdirSync(join(d.root, 'volumes')).some((n) => n.endsWith('.partial')));
      await expectStatus(
        d.group.deleteVolumeGroupSnapshot({ groupSnapshotId: group.groupSnapshotId, snapshotIds: group.snapshots.map((s) => s.snapshotId) }),
        GrpcStatus.ABORTED,
        member.snapshotId,
      );
      await restoring;
      expect(existsSync(snapshotFile(member.snapshotId))).toBe(true);
    });
  });
});


describe.runIf(isRoot)('berth-csi snapshots on an xfs root (reflink)', () => {
  it('a snapshot and a restore share blocks with their source instead of copying them', async (ctx) => {
    const base = mkdtempSync('/var/lib/berth-test/csi-reflink-');
    const image = join(base, 'root.img');
    const mnt = join(base, 'mnt');
    let driver: CsiDriver | undefined;
    try {
      writeFileSync(image, '');
      truncateSync(image, 512 * MiB);
      execFileSync('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', image], { stdio: 'pipe' });
      mkdirSync(mnt);
      try {
        attachLoopAndMount(image, mnt, 'xfs', 0);
      } catch (err) {
        const why = `this kernel cannot mount an xfs image (${(err as NodeJS.ErrnoException).code})`;
        console.log(`skipped: ${why}`);
        ctx.skip(why);
      }
      driver = await CsiDriver.start({ root: join(mnt, 'root') });
      const size = 32 * MiB;
      const { volume } = await driver.controller.createVolume({ name: 'shared', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(size) } });
      fillWithData(join(driver.root, 'volumes', `${volume!.volumeId}.img`), size);
      const free = (): number => {
        const s = statfsSync(mnt);
        return s.bavail * s.bsize;
      };
      const before = free();
      const { snapshot } = await driver.controller.createSnapshot({ name: 'shared-snap', sourceVolumeId: volume!.volumeId });
      const { volume: restored } = await driver.controller.createVolume({
        name: 'shared-restored',
        volumeCapabilities: [blockCap()],
        capacityRange: { requiredBytes: BigInt(size) },
        volumeContentSource: { snapshot: { snapshotId: snapshot!.snapshotId } },
      });
      // Two full copies would take 64 MiB; shared extents take (almost) nothing.
      expect(before - free()).toBeLessThan(4 * MiB);
      expect(driver.log()).toMatch(new RegExp(`"snapshot":"${snapshot!.snapshotId}"[^\\n]*"copy":"reflink"`));
      await driver.controller.deleteVolume({ volumeId: restored!.volumeId });
      await driver.controller.deleteSnapshot({ snapshotId: snapshot!.snapshotId });
      await driver.controller.deleteVolume({ volumeId: volume!.volumeId });
    } finally {
      await driver?.stop();
      releaseUnder(base);
      rmSync(base, { recursive: true, force: true });
    }
  });
});
