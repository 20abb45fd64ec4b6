import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, statfsSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GrpcStatus } from '../../../lib/errors.js';
import { attachLoopAndMount } from '../../../lib/loop.js';
import { projectQuotaSupport } from '../../../lib/quota.js';
import { ControllerServiceCapability_RPC_Type as ControllerRpc, type CreateVolumeRequest, type DeepPartial, type Volume } from '../../../proto/gen/csi.js';
import { blockCap, CsiDriver, MiB, Mode, mountCap, releaseUnder } from '../../../world/csi.js';
import { expectStatus, fillWithData, until, useCsiDriver } from '../../../world/csi-suite.js';
import { isRoot } from '../../../world/netns.js';

// The controller half of berth-csi over real gRPC against the built daemon: volumes are real
// sparse files (mkfs'd for filesystem volumes) and directories under the driver's root. Every
// test deletes what it made in afterEach, so counts and free space seen by later tests are
// their own.

const GiB = 1024 * MiB;
const topologyKey = 'topology.local.csi.berth.io/node';

describe.runIf(isRoot)('berth-csi Controller', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x));

  /** Volumes made by the running test, deleted after it (staged ones unstaged first). */
  let made: string[] = [];
  let staged: { volumeId: string; path: string }[] = [];

  afterEach(async () => {
    for (const s of staged) await d.node.nodeUnstageVolume({ volumeId: s.volumeId, stagingTargetPath: s.path });
    for (const id of made) await d.controller.deleteVolume({ volumeId: id });
    made = [];
    staged = [];
  });

  async function create(req: DeepPartial<CreateVolumeRequest>): Promise<Volume> {
    const { volume } = await d.controller.createVolume({ volumeCapabilities: [mountCap()], ...req });
    made.push(volume!.volumeId);
    return volume!;
  }

  const volumesDir = (): string => join(d.root, 'volumes');
  const imageOf = (id: string): string => join(volumesDir(), `${id}.img`);
  const fsTypeOf = (file: string): string => execFileSync('blkid', ['-p', '-o', 'value', '-s', 'TYPE', file], { encoding: 'utf8' }).trim();

  describe('CreateVolume', () => {
    it('a filesystem volume is a sparse image under <root>/volumes holding ext4 by default', async () => {
      const vol = await create({ name: 'fs-ext4', capacityRange: { requiredBytes: 32n * BigInt(MiB) } });
      expect(vol.volumeId).toMatch(/^vol-/);
      expect(vol.volumeContext).toEqual({ type: 'filesystem', sizeEnforced: 'true', fsType: 'ext4' });
      const st = statSync(imageOf(vol.volumeId));
      expect(st.isFile()).toBe(true);
      expect(st.size).toBe(32 * MiB);
      // Sparse: mkfs wrote metadata only.
      expect(st.blocks * 512).toBeLessThan(32 * MiB);
      expect(fsTypeOf(imageOf(vol.volumeId))).toBe('ext4');
    });

    it('parameters.fsType xfs makes an xfs image of at least 300 MiB', async () => {
      const vol = await create({ name: 'fs-xfs', parameters: { fsType: 'xfs' }, capacityRange: { requiredBytes: BigInt(300 * MiB) } });
      expect(vol.volumeContext).toEqual({ type: 'filesystem', sizeEnforced: 'true', fsType: 'xfs' });
      expect(statSync(imageOf(vol.volumeId)).size).toBe(300 * MiB);
      expect(fsTypeOf(imageOf(vol.volumeId))).toBe('xfs');
    });

    it('the fs_type of the mount capability chooses the filesystem (csi.storage.k8s.io/fstype likewise)', async () => {
      const fromCap = await create({ name: 'fs-cap-xfs', volumeCapabilities: [mountCap(Mode.SINGLE_NODE_WRITER, { fsType: 'xfs' })], capacityRange: { requiredBytes: BigInt(300 * MiB) } });
      expect(fsTypeOf(imageOf(fromCap.volumeId))).toBe('xfs');
      const fromParam = await create({ name: 'fs-k8s-xfs', parameters: { 'csi.storage.k8s.io/fstype': 'xfs' }, capacityRange: { requiredBytes: BigInt(300 * MiB) } });
      expect(fromParam.volumeContext.fsType).toBe('xfs');
      expect(fsTypeOf(imageOf(fromParam.volumeId))).toBe('xfs');
    });

    it('a block capability makes a block volume: a plain sparse file with no filesystem', async () => {
      const vol = await create({ name: 'blk-cap', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: 8n * BigInt(MiB) } });
      expect(vol.volumeContext).toEqual({ type: 'block', sizeEnforced: 'true' });
      const st = statSync(imageOf(vol.volumeId));
      expect(st.size).toBe(8 * MiB);
      expect(st.blocks).toBe(0);
    });

    it('parameters.type block makes a block volume too', async () => {
      const vol = await create({ name: 'blk-param', parameters: { type: 'block' }, volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: 4n * BigInt(MiB) } });
      expect(vol.volumeContext.type).toBe('block');
      expect(statSync(imageOf(vol.volumeId)).size).toBe(4 * MiB);
    });

    it('a directory volume without project quotas is refused with FAILED_PRECONDITION explaining quotas, and nothing is created', async (ctx) => {
      if (projectQuotaSupport(d.root)) ctx.skip(`the root ${d.root} enforces project quotas here`);
      const before = readdirSync(volumesDir());
      const err = await expectStatus(d.controller.createVolume({ name: 'dir-refused', parameters: { type: 'directory' }, volumeCapabilities: [mountCap()] }), GrpcStatus.FAILED_PRECONDITION, /project quotas/);
      expect(err.details).toMatch(/sizeEnforcement: unenforced/);
      expect(readdirSync(volumesDir())).toEqual(before);
    });

    it('a directory volume with sizeEnforcement unenforced is a directory under <root>/volumes, with sizeEnforced "false"', async () => {
      const vol = await create({ name: 'dir-unenforced', parameters: { type: 'directory', sizeEnforcement: 'unenforced' }, capacityRange: { requiredBytes: 10n * BigInt(MiB) } });
      expect(vol.volumeContext).toEqual({ type: 'directory', sizeEnforced: 'false' });
      expect(vol.capacityBytes).toBe(10n * BigInt(MiB));
      expect(statSync(join(volumesDir(), vol.volumeId)).isDirectory()).toBe(true);
    });

    it('an unknown sizeEnforcement is INVALID_ARGUMENT naming parameters.sizeEnforcement', async () => {
      await expectStatus(d.controller.createVolume({ name: 'dir-bad-mode', parameters: { type: 'directory', sizeEnforcement: 'sometimes' }, volumeCapabilities: [mountCap()] }), GrpcStatus.INVALID_ARGUMENT, 'parameters.sizeEnforcement');
    });

    it('an unknown parameters.type is INVALID_ARGUMENT naming parameters.type', async () => {
      await expectStatus(d.controller.createVolume({ name: 'bad-type', parameters: { type: 'tape' }, volumeCapabilities: [mountCap()] }), GrpcStatus.INVALID_ARGUMENT, 'parameters.type');
    });
  });

  describe('CreateVolume capacity', () => {
    it('required_bytes is honoured exactly when it is whole MiB', async () => {
      const vol = await create({ name: 'cap-required', parameters: { type: 'block' }, volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: 24n * BigInt(MiB) } });
      expect(vol.capacityBytes).toBe(24n * BigInt(MiB));
      expect(statSync(imageOf(vol.volumeId)).size).toBe(24 * MiB);
    });

    it('limit_bytes equal to required_bytes gives exactly that many bytes, even off a MiB boundary', async () => {
      const exact = 20 * MiB + 3 * 4096;
      const vol = await create({ name: 'cap-exact', capacityRange: { requiredBytes: BigInt(exact), limitBytes: BigInt(exact) } });
      expect(vol.capacityBytes).toBe(BigInt(exact));
      expect(statSync(imageOf(vol.volumeId)).size).toBe(exact);
    });

    it('without a limit, required_bytes is rounded up to whole MiB', async () => {
      const vol = await create({ name: 'cap-round', capacityRange: { requiredBytes: BigInt(20 * MiB + 1) } });
      expect(vol.capacityBytes).toBe(21n * BigInt(MiB));
      expect(statSync(imageOf(vol.volumeId)).size).toBe(21 * MiB);
    });

    it('without a capacity range, the volume gets the default size (1 GiB)', async () => {
      const vol = await create({ name: 'cap-default' });
      expect(vol.capacityBytes).toBe(BigInt(GiB));
      expect(statSync(imageOf(vol.volumeId)).size).toBe(GiB);
    });

    it('a small required size is raised to the minimum of the type (16 MiB for ext4)', async () => {
      const vol = await create({ name: 'cap-min-ext4', capacityRange: { requiredBytes: BigInt(MiB) } });
      expect(vol.capacityBytes).toBe(16n * BigInt(MiB));
    });

    it('required_bytes above limit_bytes is OUT_OF_RANGE naming capacity_range', async () => {
      await expectStatus(
        d.controller.createVolume({ name: 'cap-inverted', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 64n * BigInt(MiB), limitBytes: 32n * BigInt(MiB) } }),
        GrpcStatus.OUT_OF_RANGE,
        /capacity_range.*required_bytes/,
      );
    });

    it('a size that does not fit in the free space (1 PiB) is OUT_OF_RANGE naming capacity_range, and nothing is created', async () => {
      const before = readdirSync(volumesDir());
      await expectStatus(
        d.controller.createVolume({ name: 'cap-pib', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: 1n << 50n } }),
        GrpcStatus.OUT_OF_RANGE,
        /capacity_range.*do not fit/,
      );
      expect(readdirSync(volumesDir())).toEqual(before);
    });

    it('a limit below the smallest xfs (100 MiB < 300 MiB) is OUT_OF_RANGE naming limit_bytes', async () => {
      await expectStatus(
        d.controller.createVolume({ name: 'cap-xfs-small', parameters: { fsType: 'xfs' }, volumeCapabilities: [mountCap()], capacityRange: { limitBytes: 100n * BigInt(MiB) } }),
        GrpcStatus.OUT_OF_RANGE,
        /capacity_range.*limit_bytes.*smallest/,
      );
    });

    it('negative bytes are INVALID_ARGUMENT naming capacity_range', async () => {
      await expectStatus(d.controller.createVolume({ name: 'cap-negative', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: -1n } }), GrpcStatus.INVALID_ARGUMENT, 'capacity_range');
    });
  });

  describe('CreateVolume idempotency', () => {
    it('the same request twice answers the same volume and makes one backing file', async () => {
      const req = { name: 'idem', capacityRange: { requiredBytes: 16n * BigInt(MiB) }, parameters: { type: 'filesystem' } };
      const first = await create(req);
      const files = readdirSync(volumesDir()).length;
      const second = await create(req);
      expect(second).toEqual(first);
      expect(readdirSync(volumesDir()).length).toBe(files);
    });

    it('a repeat whose range the existing size satisfies answers the same volume', async () => {
      const first = await create({ name: 'idem-range', capacityRange: { requiredBytes: 32n * BigInt(MiB) } });
      const again = await create({ name: 'idem-range', capacityRange: { requiredBytes: 20n * BigInt(MiB), limitBytes: 40n * BigInt(MiB) } });
      expect(again.volumeId).toBe(first.volumeId);
    });

    it('only csi.storage.k8s.io/ metadata (PVC name) differing still answers the same volume', async () => {
      const first = await create({ name: 'idem-meta', parameters: { 'csi.storage.k8s.io/pvc/name': 'a' }, capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      const again = await create({ name: 'idem-meta', parameters: { 'csi.storage.k8s.io/pvc/name': 'b' }, capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      expect(again.volumeId).toBe(first.volumeId);
    });

    it('the same name with a capacity the volume does not satisfy is ALREADY_EXISTS naming name', async () => {
      await create({ name: 'idem-cap', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      await expectStatus(create({ name: 'idem-cap', capacityRange: { requiredBytes: 32n * BigInt(MiB) } }), GrpcStatus.ALREADY_EXISTS, /name.*capacity/);
    });

    it('the same name with another type is ALREADY_EXISTS naming name', async () => {
      await create({ name: 'idem-type', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      await expectStatus(create({ name: 'idem-type', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: 16n * BigInt(MiB) } }), GrpcStatus.ALREADY_EXISTS, /name.*type/);
    });

    it('the same name with another fsType is ALREADY_EXISTS naming name', async () => {
      await create({ name: 'idem-fs', capacityRange: { requiredBytes: BigInt(300 * MiB) } });
      await expectStatus(create({ name: 'idem-fs', parameters: { fsType: 'xfs' }, capacityRange: { requiredBytes: BigInt(300 * MiB) } }), GrpcStatus.ALREADY_EXISTS, /name.*fsType/);
    });

    it('the same name with other parameters is ALREADY_EXISTS naming name', async () => {
      await create({ name: 'idem-params', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      await expectStatus(
        create({ name: 'idem-params', parameters: { type: 'filesystem', fsType: 'ext4' }, capacityRange: { requiredBytes: 16n * BigInt(MiB) } }),
        GrpcStatus.ALREADY_EXISTS,
        /name.*parameters/,
      );
    });
  });

  describe('CreateVolume argument checks', () => {
    const cap = mountCap();
    it('a missing name is INVALID_ARGUMENT naming name', async () => {
      await expectStatus(d.controller.createVolume({ volumeCapabilities: [cap] }), GrpcStatus.INVALID_ARGUMENT, /^name: is required/);
    });

    it('missing capabilities are INVALID_ARGUMENT naming volume_capabilities', async () => {
      await expectStatus(d.controller.createVolume({ name: 'no-caps' }), GrpcStatus.INVALID_ARGUMENT, 'volume_capabilities');
    });

    it('a capability without access_mode is INVALID_ARGUMENT naming volume_capabilities[0].access_mode', async () => {
      await expectStatus(d.controller.createVolume({ name: 'no-mode', volumeCapabilities: [{ mount: {} }] }), GrpcStatus.INVALID_ARGUMENT, 'volume_capabilities[0].access_mode');
    });

    it('a capability with neither block nor mount is INVALID_ARGUMENT naming volume_capabilities[0]', async () => {
      await expectStatus(d.controller.createVolume({ name: 'no-access-type', volumeCapabilities: [{ accessMode: { mode: Mode.SINGLE_NODE_WRITER } }] }), GrpcStatus.INVALID_ARGUMENT, /volume_capabilities\[0\]: one of block or mount/);
    });

    it('a multi-node access mode is INVALID_ARGUMENT naming the access mode', async () => {
      const err = await expectStatus(d.controller.createVolume({ name: 'multi', volumeCapabilities: [mountCap(Mode.MULTI_NODE_MULTI_WRITER)] }), GrpcStatus.INVALID_ARGUMENT, 'volume_capabilities[0].access_mode.mode');
      expect(err.details).toMatch(/MULTI_NODE_MULTI_WRITER is a multi-node mode/);
    });

    it('an unknown parameter is INVALID_ARGUMENT naming it', async () => {
      await expectStatus(d.controller.createVolume({ name: 'typo', parameters: { fstype: 'xfs' }, volumeCapabilities: [cap] }), GrpcStatus.INVALID_ARGUMENT, 'parameters.fstype');
    });

    it('an unsupported parameters.fsType is INVALID_ARGUMENT naming parameters.fsType', async () => {
      await expectStatus(d.controller.createVolume({ name: 'btrfs', parameters: { fsType: 'btrfs' }, volumeCapabilities: [cap] }), GrpcStatus.INVALID_ARGUMENT, /parameters.fsType.*btrfs/);
    });

    it('an unsupported mount fs_type is INVALID_ARGUMENT naming volume_capabilities[0].mount.fs_type', async () => {
      await expectStatus(d.controller.createVolume({ name: 'ntfs', volumeCapabilities: [mountCap(Mode.SINGLE_NODE_WRITER, { fsType: 'ntfs' })] }), GrpcStatus.INVALID_ARGUMENT, 'volume_capabilities[0].mount.fs_type');
    });

    it('a mount fs_type contradicting parameters.fsType is INVALID_ARGUMENT naming the capability', async () => {
      await expectStatus(
        d.controller.createVolume({ name: 'contradict', parameters: { fsType: 'ext4' }, volumeCapabilities: [mountCap(Mode.SINGLE_NODE_WRITER, { fsType: 'xfs' })] }),
        GrpcStatus.INVALID_ARGUMENT,
        'volume_capabilities.mount.fs_type',
      );
    });

    it('block and mount capabilities together are INVALID_ARGUMENT naming volume_capabilities', async () => {
      await expectStatus(d.controller.createVolume({ name: 'mixed', volumeCapabilities: [blockCap(), mountCap()] }), GrpcStatus.INVALID_ARGUMENT, /^volume_capabilities: a block volume/);
      await expectStatus(d.controller.createVolume({ name: 'mixed-fs', parameters: { type: 'filesystem' }, volumeCapabilities: [mountCap(), blockCap()] }), GrpcStatus.INVALID_ARGUMENT, /^volume_capabilities: a filesystem volume/);
    });

    it('a malformed source volume ID is INVALID_ARGUMENT naming volume_content_source.volume.volume_id', async () => {
      await expectStatus(d.controller.createVolume({ name: 'bad-src', volumeCapabilities: [cap], volumeContentSource: { volume: { volumeId: '../x' } } }), GrpcStatus.INVALID_ARGUMENT, 'volume_content_source.volume.volume_id');
    });

    it('an unknown source volume is NOT_FOUND naming volume_content_source.volume.volume_id', async () => {
      await expectStatus(d.controller.createVolume({ name: 'no-src', volumeCapabilities: [cap], volumeContentSource: { volume: { volumeId: 'vol-nope' } } }), GrpcStatus.NOT_FOUND, 'volume_content_source.volume.volume_id');
    });
  });

  describe('CreateVolume topology', () => {
    it('a requisite topology naming only another node is RESOURCE_EXHAUSTED naming accessibility_requirements', async () => {
      await expectStatus(
        d.controller.createVolume({
          name: 'topo-other',
          volumeCapabilities: [mountCap()],
          accessibilityRequirements: { requisite: [{ segments: { [topologyKey]: 'node-b' } }], preferred: [{ segments: { [topologyKey]: 'node-b' } }] },
        }),
        GrpcStatus.RESOURCE_EXHAUSTED,
        /accessibility_requirements.requisite.*node-a/,
      );
    });

    it('a requisite topology including this node creates the volume, accessible on node-a only', async () => {
      const vol = await create({
        name: 'topo-ours',
        capacityRange: { requiredBytes: 16n * BigInt(MiB) },
        accessibilityRequirements: { requisite: [{ segments: { [topologyKey]: 'node-b' } }, { segments: { [topologyKey]: 'node-a' } }] },
      });
      expect(vol.accessibleTopology).toEqual([{ segments: { [topologyKey]: 'node-a' } }]);
    });
  });

  describe('DeleteVolume', () => {
    it('DeleteVolume of an unknown ID succeeds and changes nothing', async () => {
      const before = readdirSync(volumesDir());
      await d.controller.deleteVolume({ volumeId: 'vol-000000000000-none' });
      expect(readdirSync(volumesDir())).toEqual(before);
    });

    it.each(['../etc', 'a/b', '.hidden'])('a malformed ID (%s) is INVALID_ARGUMENT naming volume_id', async (volumeId) => {
      await expectStatus(d.controller.deleteVolume({ volumeId }), GrpcStatus.INVALID_ARGUMENT, /^volume_id: .*is not an ID/);
    });

    it('a missing ID is INVALID_ARGUMENT naming volume_id', async () => {
      await expectStatus(d.controller.deleteVolume({}), GrpcStatus.INVALID_ARGUMENT, /^volume_id: is required/);
    });

    it('deleting removes the backing file, the directory, and the record', async () => {
      const fs = await create({ name: 'del-fs', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      const dir = await create({ name: 'del-dir', parameters: { type: 'directory', sizeEnforcement: 'unenforced' } });
      writeFileSync(join(volumesDir(), dir.volumeId, 'data'), 'x');
      for (const vol of [fs, dir]) await d.controller.deleteVolume({ volumeId: vol.volumeId });
      expect(existsSync(imageOf(fs.volumeId))).toBe(false);
      expect(existsSync(join(volumesDir(), dir.volumeId))).toBe(false);
      await expectStatus(d.controller.controllerGetVolume({ volumeId: fs.volumeId }), GrpcStatus.NOT_FOUND, 'volume_id');
      // The name is free again: a new volume, not the old one.
      const again = await create({ name: 'del-fs', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      expect(again.volumeId).not.toBe(fs.volumeId);
    });

    it('a staged volume is FAILED_PRECONDITION naming volume_id and the staging path, and is kept', async () => {
      const vol = await create({ name: 'del-staged', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      const path = d.path('stage-del');
      await d.node.nodeStageVolume({ volumeId: vol.volumeId, stagingTargetPath: path, volumeCapability: mountCap() });
      staged.push({ volumeId: vol.volumeId, path });
      const err = await expectStatus(d.controller.deleteVolume({ volumeId: vol.volumeId }), GrpcStatus.FAILED_PRECONDITION, /^volume_id: .*in use/);
      expect(err.details).toContain(path);
      expect(existsSync(imageOf(vol.volumeId))).toBe(true);
      await d.node.nodeUnstageVolume({ volumeId: vol.volumeId, stagingTargetPath: path });
      staged = [];
      await d.controller.deleteVolume({ volumeId: vol.volumeId });
      expect(existsSync(imageOf(vol.volumeId))).toBe(false);
    });

    it('a volume whose backing file was removed by hand can still be deleted', async () => {
      const vol = await create({ name: 'del-gone', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(MiB) } });
      rmSync(imageOf(vol.volumeId));
      await d.controller.deleteVolume({ volumeId: vol.volumeId });
      await expectStatus(d.controller.controllerGetVolume({ volumeId: vol.volumeId }), GrpcStatus.NOT_FOUND, 'volume_id');
    });
  });

  describe('ValidateVolumeCapabilities', () => {
    it('capabilities the volume supports are confirmed, echoing context and parameters', async () => {
      const vol = await create({ name: 'val-fs', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      const caps = [mountCap(), mountCap(Mode.SINGLE_NODE_READER_ONLY), mountCap(Mode.SINGLE_NODE_MULTI_WRITER, { fsType: 'ext4' })];
      const res = await d.controller.validateVolumeCapabilities({ volumeId: vol.volumeId, volumeCapabilities: caps, volumeContext: vol.volumeContext, parameters: { type: 'filesystem' } });
      expect(res.confirmed).toBeDefined();
      expect(res.confirmed!.volumeCapabilities).toHaveLength(3);
      expect(res.confirmed!.volumeContext).toEqual(vol.volumeContext);
      expect(res.confirmed!.parameters).toEqual({ type: 'filesystem' });
    });

    it('a block capability on a block volume is confirmed', async () => {
      const vol = await create({ name: 'val-blk', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(MiB) } });
      const res = await d.controller.validateVolumeCapabilities({ volumeId: vol.volumeId, volumeCapabilities: [blockCap()] });
      expect(res.confirmed).toBeDefined();
    });

    it('a multi-node mode is not confirmed, and the message says why', async () => {
      const vol = await create({ name: 'val-multi', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      const res = await d.controller.validateVolumeCapabilities({ volumeId: vol.volumeId, volumeCapabilities: [mountCap(), mountCap(Mode.MULTI_NODE_READER_ONLY)] });
      expect(res.confirmed).toBeUndefined();
      expect(res.message).toMatch(/volume_capabilities\[1\].access_mode.mode: MULTI_NODE_READER_ONLY is a multi-node mode/);
    });

    it('block access on a filesystem volume (and mount on a block volume) is not confirmed, and the message says why', async () => {
      const fs = await create({ name: 'val-fs-blk', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      const onFs = await d.controller.validateVolumeCapabilities({ volumeId: fs.volumeId, volumeCapabilities: [blockCap()] });
      expect(onFs.confirmed).toBeUndefined();
      expect(onFs.message).toMatch(/volume_capabilities\[0\]: .* filesystem volume; it cannot be used as a raw block device/);
      const blk = await create({ name: 'val-blk-fs', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(MiB) } });
      const onBlock = await d.controller.validateVolumeCapabilities({ volumeId: blk.volumeId, volumeCapabilities: [mountCap()] });
      expect(onBlock.confirmed).toBeUndefined();
      expect(onBlock.message).toMatch(/block volume; it cannot be mounted/);
    });

    it('an unknown volume is NOT_FOUND naming volume_id', async () => {
      await expectStatus(d.controller.validateVolumeCapabilities({ volumeId: 'vol-unknown', volumeCapabilities: [mountCap()] }), GrpcStatus.NOT_FOUND, 'volume_id');
    });

    it('missing capabilities are INVALID_ARGUMENT naming volume_capabilities', async () => {
      const vol = await create({ name: 'val-nocaps', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(MiB) } });
      await expectStatus(d.controller.validateVolumeCapabilities({ volumeId: vol.volumeId }), GrpcStatus.INVALID_ARGUMENT, /^volume_capabilities: /);
    });

    it('a missing volume ID is INVALID_ARGUMENT naming volume_id', async () => {
      await expectStatus(d.controller.validateVolumeCapabilities({ volumeCapabilities: [mountCap()] }), GrpcStatus.INVALID_ARGUMENT, /^volume_id: /);
    });
  });

  describe('ListVolumes', () => {
    /** n 1 MiB block volumes (no mkfs: fast). */
    async function blockVolumes(prefix: string, n: number): Promise<string[]> {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push((await create({ name: `${prefix}-${i}`, volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(MiB) } })).volumeId);
      return ids;
    }

    async function allIds(): Promise<string[]> {
      const res = await d.controller.listVolumes({});
      expect(res.nextToken).toBe('');
      return res.entries.map((e) => e.volume!.volumeId);
    }

    /** Walk every page of `maxEntries`, calling `between` after the first page. */
    async function walk(maxEntries: number, between?: (firstPage: string[]) => Promise<void>): Promise<string[][]> {
      const pages: string[][] = [];
      let token = '';
      do {
        const res = await d.controller.listVolumes({ maxEntries, startingToken: token });
        expect(res.entries.length).toBeLessThanOrEqual(maxEntries);
        pages.push(res.entries.map((e) => e.volume!.volumeId));
        if (pages.length === 1 && between) await between(pages[0]!);
        token = res.nextToken;
        expect(pages.length).toBeLessThan(50);
      } while (token);
      return pages;
    }

    it('max_entries 0 lists every volume with no next token, with its size, context and topology', async () => {
      const ids = await blockVolumes('list-all', 3);
      const res = await d.controller.listVolumes({ maxEntries: 0 });
      expect(res.nextToken).toBe('');
      const listed = res.entries.map((e) => e.volume!.volumeId);
      expect(listed).toEqual(expect.arrayContaining(ids));
      const entry = res.entries.find((e) => e.volume!.volumeId === ids[0])!;
      expect(entry.volume!.capacityBytes).toBe(BigInt(MiB));
      expect(entry.volume!.volumeContext).toEqual({ type: 'block', sizeEnforced: 'true' });
      expect(entry.volume!.accessibleTopology).toEqual([{ segments: { [topologyKey]: 'node-a' } }]);
    });

    it('pages of max_entries 2 walk every volume exactly once, in ID order', async () => {
      await blockVolumes('list-page', 5);
      const all = await allIds();
      const pages = await walk(2);
      expect(pages.slice(0, -1).every((p) => p.length === 2)).toBe(true);
      expect(pages.length).toBe(Math.ceil(all.length / 2));
      const walked = pages.flat();
      expect(walked).toEqual(all);
      expect(walked).toEqual([...walked].sort());
      expect(new Set(walked).size).toBe(walked.length);
    });

    it('a volume created between pages appears on a later page', async () => {
      await blockVolumes('list-between', 3);
      let late = '';
      const pages = await walk(2, async () => {
        late = (await blockVolumes('list-between-late', 1))[0]!;
      });
      expect(pages[0]).not.toContain(late);
      expect(pages.slice(1).flat()).toContain(late);
      expect(pages.flat()).toEqual(await allIds());
    });

    it('deleting the last volume of a page does not break the next token', async () => {
      await blockVolumes('list-delete', 4);
      const all = await allIds();
      const first = await d.controller.listVolumes({ maxEntries: 2 });
      const gone = first.entries.at(-1)!.volume!.volumeId;
      await d.controller.deleteVolume({ volumeId: gone });
      const rest: string[] = [];
      let token = first.nextToken;
      while (token) {
        const res = await d.controller.listVolumes({ maxEntries: 2, startingToken: token });
        rest.push(...res.entries.map((e) => e.volume!.volumeId));
        token = res.nextToken;
      }
      expect(rest).toEqual(all.slice(2));
    });

    it('a starting token the driver did not issue is ABORTED naming starting_token', async () => {
      await expectStatus(d.controller.listVolumes({ startingToken: 'invalid-token' }), GrpcStatus.ABORTED, /^starting_token: /);
    });

    it('a negative max_entries is INVALID_ARGUMENT naming max_entries', async () => {
      await expectStatus(d.controller.listVolumes({ maxEntries: -1 }), GrpcStatus.INVALID_ARGUMENT, /^max_entries: /);
    });

    it('entries carry a healthy volume condition', async () => {
      const [id] = await blockVolumes('list-healthy', 1);
      const entry = (await d.controller.listVolumes({})).entries.find((e) => e.volume!.volumeId === id)!;
      expect(entry.status!.volumeCondition).toEqual({ abnormal: false, message: 'volume is healthy' });
      expect(entry.status!.publishedNodeIds).toEqual([]);
    });

    it('a volume whose backing file was removed by hand is reported abnormal, naming the path', async () => {
      const [id] = await blockVolumes('list-gone', 1);
      const image = imageOf(id!);
      rmSync(image);
      const entry = (await d.controller.listVolumes({})).entries.find((e) => e.volume!.volumeId === id)!;
      expect(entry.status!.volumeCondition!.abnormal).toBe(true);
      expect(entry.status!.volumeCondition!.message).toContain(image);
      const got = await d.controller.controllerGetVolume({ volumeId: id });
      expect(got.status!.volumeCondition!.abnormal).toBe(true);
      expect(got.status!.volumeCondition!.message).toContain(image);
    });
  });

  describe('ControllerGetVolume', () => {
    it('an unknown volume is NOT_FOUND naming volume_id', async () => {
      await expectStatus(d.controller.controllerGetVolume({ volumeId: 'vol-unknown' }), GrpcStatus.NOT_FOUND, /^volume_id: /);
    });

    it('a malformed ID is INVALID_ARGUMENT naming volume_id', async () => {
      await expectStatus(d.controller.controllerGetVolume({ volumeId: '../x' }), GrpcStatus.INVALID_ARGUMENT, /^volume_id: /);
    });

    it('a volume is answered as CreateVolume answered it, healthy', async () => {
      const vol = await create({ name: 'get-fs', capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      const got = await d.controller.controllerGetVolume({ volumeId: vol.volumeId });
      expect(got.volume).toEqual(vol);
      expect(got.status!.volumeCondition).toEqual({ abnormal: false, message: 'volume is healthy' });
    });
  });

  describe('GetCapacity', () => {
    const freeBytes = (): number => {
      const s = statfsSync(d.root);
      return s.bavail * s.bsize;
    };

    it('available capacity is above 0 and at most the free space of the root, maximum_volume_size likewise', async () => {
      const before = freeBytes();
      const res = await d.controller.getCapacity({ volumeCapabilities: [mountCap()] });
      const free = Math.max(before, freeBytes());
      expect(res.availableCapacity).toBeGreaterThan(0n);
      expect(res.availableCapacity).toBeLessThanOrEqual(BigInt(free));
      expect(res.maximumVolumeSize).toBeLessThanOrEqual(res.availableCapacity);
      expect(res.minimumVolumeSize).toBe(16n * BigInt(MiB));
    });

    it('a large sparse volume lowers the capacity by its size although it takes no disk yet (no overcommit)', async () => {
      const size = 8 * GiB;
      const before = Number((await d.controller.getCapacity({})).availableCapacity);
      const vol = await create({ name: 'cap-large', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(size) } });
      expect(statSync(imageOf(vol.volumeId)).blocks).toBe(0);
      const after = Number((await d.controller.getCapacity({})).availableCapacity);
      // Other processes on the machine write and delete files meanwhile: allow 512 MiB of noise.
      expect(Math.abs(before - after - size)).toBeLessThan(512 * MiB);
      await d.controller.deleteVolume({ volumeId: vol.volumeId });
      const restored = Number((await d.controller.getCapacity({})).availableCapacity);
      expect(Math.abs(restored - before)).toBeLessThan(512 * MiB);
    });

    it('a topology segment naming another node has 0 capacity', async () => {
      const res = await d.controller.getCapacity({ volumeCapabilities: [mountCap()], accessibleTopology: { segments: { [topologyKey]: 'node-b' } } });
      expect(res).toEqual({ availableCapacity: 0n, maximumVolumeSize: 0n, minimumVolumeSize: 0n });
      const ours = await d.controller.getCapacity({ volumeCapabilities: [mountCap()], accessibleTopology: { segments: { [topologyKey]: 'node-a' } } });
      expect(ours.availableCapacity).toBeGreaterThan(0n);
    });

    it('directory volumes have 0 capacity when their size cannot be enforced and the driver refuses them', async (ctx) => {
      if (projectQuotaSupport(d.root)) ctx.skip(`the root ${d.root} enforces project quotas here`);
      const refused = await d.controller.getCapacity({ volumeCapabilities: [mountCap()], parameters: { type: 'directory' } });
      expect(refused.availableCapacity).toBe(0n);
      const unenforced = await d.controller.getCapacity({ volumeCapabilities: [mountCap()], parameters: { type: 'directory', sizeEnforcement: 'unenforced' } });
      expect(unenforced.availableCapacity).toBeGreaterThan(0n);
      expect(unenforced.minimumVolumeSize).toBe(BigInt(MiB));
    });

    it('minimum_volume_size is 300 MiB for xfs, 16 MiB for ext4 and 1 MiB for block', async () => {
      expect((await d.controller.getCapacity({ parameters: { fsType: 'xfs' } })).minimumVolumeSize).toBe(BigInt(300 * MiB));
      expect((await d.controller.getCapacity({ parameters: { fsType: 'ext4' } })).minimumVolumeSize).toBe(16n * BigInt(MiB));
      expect((await d.controller.getCapacity({ volumeCapabilities: [blockCap()] })).minimumVolumeSize).toBe(BigInt(MiB));
    });

    it('invalid parameters or capabilities are INVALID_ARGUMENT naming the field', async () => {
      await expectStatus(d.controller.getCapacity({ parameters: { color: 'blue' } }), GrpcStatus.INVALID_ARGUMENT, 'parameters.color');
      await expectStatus(d.controller.getCapacity({ volumeCapabilities: [mountCap(Mode.MULTI_NODE_MULTI_WRITER)] }), GrpcStatus.INVALID_ARGUMENT, 'volume_capabilities[0].access_mode.mode');
    });
  });

  describe('ControllerExpandVolume', () => {
    it('grows a filesystem volume\'s image to exactly the new size, and asks for node expansion', async () => {
      const vol = await create({ name: 'exp-fs', capacityRange: { requiredBytes: 32n * BigInt(MiB) } });
      const res = await d.controller.controllerExpandVolume({ volumeId: vol.volumeId, capacityRange: { requiredBytes: 48n * BigInt(MiB) } });
      expect(res).toEqual({ capacityBytes: 48n * BigInt(MiB), nodeExpansionRequired: true });
      expect(statSync(imageOf(vol.volumeId)).size).toBe(48 * MiB);
      expect((await d.controller.controllerGetVolume({ volumeId: vol.volumeId })).volume!.capacityBytes).toBe(48n * BigInt(MiB));
    });

    it('a directory volume grows without node expansion', async () => {
      const vol = await create({ name: 'exp-dir', parameters: { type: 'directory', sizeEnforcement: 'unenforced' }, capacityRange: { requiredBytes: 10n * BigInt(MiB) } });
      const res = await d.controller.controllerExpandVolume({ volumeId: vol.volumeId, capacityRange: { requiredBytes: 20n * BigInt(MiB) } });
      expect(res).toEqual({ capacityBytes: 20n * BigInt(MiB), nodeExpansionRequired: false });
    });

    it('an unstaged block volume grows without node expansion', async () => {
      const vol = await create({ name: 'exp-blk', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: 4n * BigInt(MiB) } });
      const res = await d.controller.controllerExpandVolume({ volumeId: vol.volumeId, capacityRange: { requiredBytes: 6n * BigInt(MiB) }, volumeCapability: blockCap() });
      expect(res).toEqual({ capacityBytes: 6n * BigInt(MiB), nodeExpansionRequired: false });
      expect(statSync(imageOf(vol.volumeId)).size).toBe(6 * MiB);
    });

    it('a size at or below the current one answers the current size and changes nothing', async () => {
      const vol = await create({ name: 'exp-smaller', capacityRange: { requiredBytes: 32n * BigInt(MiB) } });
      const res = await d.controller.controllerExpandVolume({ volumeId: vol.volumeId, capacityRange: { requiredBytes: 16n * BigInt(MiB) } });
      expect(res).toEqual({ capacityBytes: 32n * BigInt(MiB), nodeExpansionRequired: false });
      expect(statSync(imageOf(vol.volumeId)).size).toBe(32 * MiB);
    });

    it('a missing capacity_range is INVALID_ARGUMENT naming capacity_range', async () => {
      const vol = await create({ name: 'exp-norange', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(MiB) } });
      await expectStatus(d.controller.controllerExpandVolume({ volumeId: vol.volumeId }), GrpcStatus.INVALID_ARGUMENT, /^capacity_range: is required/);
    });

    it('an unknown volume is NOT_FOUND naming volume_id', async () => {
      await expectStatus(d.controller.controllerExpandVolume({ volumeId: 'vol-unknown', capacityRange: { requiredBytes: BigInt(MiB) } }), GrpcStatus.NOT_FOUND, /^volume_id: /);
    });

    it('a size that does not fit the free space is OUT_OF_RANGE naming capacity_range, and the volume keeps its size', async () => {
      const vol = await create({ name: 'exp-huge', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(MiB) } });
      await expectStatus(d.controller.controllerExpandVolume({ volumeId: vol.volumeId, capacityRange: { requiredBytes: 1n << 50n } }), GrpcStatus.OUT_OF_RANGE, /^capacity_range: /);
      expect(statSync(imageOf(vol.volumeId)).size).toBe(MiB);
      expect((await d.controller.controllerGetVolume({ volumeId: vol.volumeId })).volume!.capacityBytes).toBe(BigInt(MiB));
    });
  });

  describe('capabilities and unserved RPCs', () => {
    it('ControllerGetCapabilities lists exactly what the driver serves', async () => {
      const { capabilities } = await d.controller.controllerGetCapabilities();
      const types = capabilities.map((c) => c.rpc!.type).sort((a, b) => a - b);
      expect(types).toEqual(
        [
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
        ].sort((a, b) => a - b),
      );
    });

    it('ControllerPublishVolume, ControllerUnpublishVolume and ControllerModifyVolume are UNIMPLEMENTED', async () => {
      await expectStatus(d.controller.controllerPublishVolume({ volumeId: 'vol-x', nodeId: 'node-a', volumeCapability: mountCap() }), GrpcStatus.UNIMPLEMENTED, /ControllerPublishVolume/);
      await expectStatus(d.controller.controllerUnpublishVolume({ volumeId: 'vol-x', nodeId: 'node-a' }), GrpcStatus.UNIMPLEMENTED, /ControllerUnpublishVolume/);
      await expectStatus(d.controller.controllerModifyVolume({ volumeId: 'vol-x', mutableParameters: { a: 'b' } }), GrpcStatus.UNIMPLEMENTED, /ControllerModifyVolume/);
    });
  });

  describe('concurrency', () => {
    it('two CreateVolume calls with one name at once make one volume: the other is ABORTED or answers the same', async () => {
      const before = readdirSync(volumesDir()).length;
      const req = { name: 'race', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 16n * BigInt(MiB) } };
      const results = await Promise.allSettled([d.controller.createVolume(req), d.controller.createVolume(req)]);
      const ok = results.filter((r) => r.status === 'fulfilled').map((r) => r.value.volume!.volumeId);
      for (const id of ok) made.push(id);
      expect(ok.length).toBeGreaterThanOrEqual(1);
      expect(new Set(ok).size).toBe(1);
      for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: number }).code).toBe(GrpcStatus.ABORTED);
      expect(readdirSync(volumesDir()).length).toBe(before + 1);
      // Retried, the loser gets the winner's volume.
      expect((await d.controller.createVolume(req)).volume!.volumeId).toBe(ok[0]);
    });

    it('DeleteVolume of a volume being cloned is ABORTED naming it, and the clone completes', async () => {
      // A block source full of data (not sparse), so the copy takes long enough to be seen
      // under way: its temporary <id>.img.partial exists only while CreateVolume holds the source.
      const size = 64 * MiB;
      const src = await create({ name: 'clone-src', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(size) } });
      fillWithData(imageOf(src.volumeId), size);
      const cloning = d.controller.createVolume({ name: 'clone-dst', volumeCapabilities: [blockCap()], capacityRange: { requiredBytes: BigInt(size) }, volumeContentSource: { volume: { volumeId: src.volumeId } } });
      cloning.then((r) => made.push(r.volume!.volumeId), () => undefined);
      await until(() => readdirSync(volumesDir()).some((n) => n.endsWith('.partial')));
      await expectStatus(d.controller.deleteVolume({ volumeId: src.volumeId }), GrpcStatus.ABORTED, src.volumeId);
      const { volume: clone } = await cloning;
      expect(clone!.contentSource).toEqual({ volume: { volumeId: src.volumeId } });
      expect(statSync(imageOf(clone!.volumeId)).size).toBe(size);
      expect(existsSync(imageOf(src.volumeId))).toBe(true);
    });
  });
});


describe.runIf(isRoot)('berth-csi Controller with --directory-size-enforcement unenforced --default-type directory', () => {
  let d: CsiDriver;
  useCsiDriver((x) => (d = x), { args: ['--directory-size-enforcement', 'unenforced', '--default-type', 'directory'] });

  it('a volume with no parameters is an unenforced directory', async () => {
    const { volume } = await d.controller.createVolume({ name: 'dflt', volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 5n * BigInt(MiB) } });
    try {
      expect(volume!.volumeContext).toEqual({ type: 'directory', sizeEnforced: 'false' });
      expect(statSync(join(d.root, 'volumes', volume!.volumeId)).isDirectory()).toBe(true);
      expect((await d.controller.getCapacity({ volumeCapabilities: [mountCap()] })).availableCapacity).toBeGreaterThan(0n);
    } finally {
      await d.controller.deleteVolume({ volumeId: volume!.volumeId });
    }
  });

  it('a StorageClass asking sizeEnforcement refuse still gets FAILED_PRECONDITION', async (ctx) => {
    if (projectQuotaSupport(d.root)) ctx.skip(`the root ${d.root} enforces project quotas here`);
    await expectStatus(d.controller.createVolume({ name: 'strict', parameters: { sizeEnforcement: 'refuse' }, volumeCapabilities: [mountCap()] }), GrpcStatus.FAILED_PRECONDITION, /project quotas/);
  });
});

describe.runIf(isRoot)('berth-csi Controller on a root with project quotas', () => {
  it('a directory volume is enforced: sizeEnforced "true", and writing past its size fails', async (ctx) => {
    const base = mkdtempSync('/var/lib/berth-test/csi-quota-');
    const image = join(base, 'root.img');
    const mnt = join(base, 'mnt');
    let driver: CsiDriver | undefined;
    try {
      writeFileSync(image, '');
      truncateSync(image, 300 * MiB);
      execFileSync('mkfs.xfs', ['-q', '-f', image], { stdio: 'pipe' });
      mkdirSync(mnt);
      let why: string | undefined;
      try {
        attachLoopAndMount(image, mnt, 'xfs', 0, 'prjquota');
        if (!projectQuotaSupport(mnt)) why = 'xfs mounted with -o prjquota does not report prjquota in mountinfo';
      } catch (err) {
        why = `this kernel cannot mount xfs with -o prjquota (${(err as NodeJS.ErrnoException).code}); enforced directory volumes need CONFIG_XFS_QUOTA`;
      }
      if (why) {
        console.log(`skipped: ${why}`);
        ctx.skip(why);
      }
      driver = await CsiDriver.start({ root: join(mnt, 'root') });
      const { volume } = await driver.controller.createVolume({ name: 'quota', parameters: { type: 'directory' }, volumeCapabilities: [mountCap()], capacityRange: { requiredBytes: 2n * BigInt(MiB) } });
      expect(volume!.volumeContext).toEqual({ type: 'directory', sizeEnforced: 'true' });
      const dir = join(driver.root, 'volumes', volume!.volumeId);
      expect(() => writeFileSync(join(dir, 'big'), Buffer.alloc(4 * MiB))).toThrow(/ENOSPC|EDQUOT/);
      await driver.controller.deleteVolume({ volumeId: volume!.volumeId });
    } finally {
      await driver?.stop();
      releaseUnder(base);
      rmSync(base, { recursive: true, force: true });
    }
  });
});
