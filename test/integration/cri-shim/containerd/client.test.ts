import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerdClient } from '../../../../cri-shim/containerd/client.js';
import { createContainerRecord, deleteContainerRecord, jsonAny, runcOptionsAny, runcV2, specTypeUrl } from '../../../../cri-shim/containerd/containers.js';
import { contentInfo, readJsonBlob, setContentLabels, writeBlob } from '../../../../cri-shim/containerd/content.js';
import { deleteImageRecord, getImageRecord, putImageRecord } from '../../../../cri-shim/containerd/images.js';
import { deleteLeftoverLeases, LeasePool } from '../../../../cri-shim/containerd/leases.js';
import { chainIds, prepareSnapshot, removeSnapshot, statSnapshot, unpackLayers } from '../../../../cri-shim/containerd/snapshots.js';
import { createTask, deleteTask, getTask, startTask, TaskStatus, waitTask } from '../../../../cri-shim/containerd/tasks.js';
import { type ContainerdWorld, startContainerd } from '../../../../world/containerd.js';
import { testImages } from '../../../../world/images.js';
import { isRoot } from '../../../../world/netns.js';
import { imageBlobs } from '../../../../lib/oci/image.js';

// The typed containerd client against a real, private containerd: content in, layers unpacked
// into snapshots by the diff service, a container record and a runc task that runs and exits.

describe.skipIf(!isRoot)('containerd client', () => {
  let world: ContainerdWorld;
  let client: ContainerdClient;
  let tmp: string;

  beforeAll(async () => {
    world = await startContainerd();
    client = new ContainerdClient(world.socket);
    await client.waitReady();
    tmp = mkdtempSync(join(tmpdir(), 'berth-ctrd-'));
  });

  afterAll(async () => {
    client?.close();
    await world?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('stores blobs by digest, twice without error, and rejects a wrong digest', async () => {
    const { busybox } = testImages();
    for (const blob of imageBlobs(busybox)) await writeBlob(client, blob.digest, blob.bytes, { size: blob.bytes.length });
    await writeBlob(client, busybox.config.digest, busybox.config.bytes, { size: busybox.config.bytes.length });
    const info = await contentInfo(client, busybox.manifest.digest);
    expect(info?.size).toBe(BigInt(busybox.manifest.bytes.length));
    const config = await readJsonBlob<{ rootfs: { diff_ids: string[] } }>(client, busybox.config.digest);
    expect(config.rootfs.diff_ids).toEqual(busybox.layers.map((l) => l.diffId));
    const wrong = `sha256:${'0'.repeat(64)}`;
    await expect(writeBlob(client, wrong, Buffer.from('not that'), { size: 8 })).rejects.toThrow(/digest|unexpected/i);
    expect(await contentInfo(client, wrong)).toBeUndefined();
  });

  it('unpacks layers into chain-ID snapshots and runs a container from them', async () => {
    const { busybox } = testImages();
    await setContentLabels(client, busybox.manifest.digest, { 'containerd.io/gc.ref.content.config': busybox.config.digest });
    await putImageRecord(client, 'berth.test/busybox:1', { mediaType: busybox.manifest.mediaType, digest: busybox.manifest.digest, size: BigInt(busybox.manifest.bytes.length), annotations: {} }, {});
    expect((await getImageRecord(client, 'berth.test/busybox:1'))?.target?.digest).toBe(busybox.manifest.digest);

    const layers = busybox.layers.map((l) => ({ descriptor: { mediaType: l.mediaType, digest: l.digest, size: BigInt(l.bytes.length), annotations: {} }, diffId: l.diffId }));
    const top = await unpackLayers(client, layers);
    expect(top).toBe(chainIds(busybox.layers.map((l) => l.diffId)).at(-1));
    expect(await statSnapshot(client, top)).toBeDefined();
    // A second unpack finds the snapshots and changes nothing.
    expect(await unpackLayers(client, layers)).toBe(top);

    const id = 'berth-client-test';
    const mounts = await prepareSnapshot(client, id, top);
    const out = join(tmp, 'out.log');
    const spec = {
      ociVersion: '1.0.2',
      process: { args: ['sh', '-c', 'echo hello from $(cat /etc/hostname 2>/dev/null || echo busybox); exit 7'], cwd: '/', env: ['PATH=/bin:/usr/bin'], user: { uid: 0, gid: 0 } },
      root: { path: 'rootfs' },
      hostname: 'ctrd-test',
      mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
      linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }], cgroupsPath: `/berth-test/${id}` },
    };
    await createContainerRecord(client, {
      id,
      labels: { 'io.berth.test': 'yes' },
      image: 'berth.test/busybox:1',
      runtime: { name: runcV2, options: runcOptionsAny({ binaryName: 'runc' }) },
      spec: jsonAny(specTypeUrl, spec),
      snapshotter: 'overlayfs',
      snapshotKey: id,
      extensions: {},
    });
    try {
      const pid = await createTask(client, id, mounts, { stdout: `file://${out}`, stderr: `file://${out}` });
      expect(pid).toBeGreaterThan(0);
      expect((await getTask(client, id))?.status).toBe(TaskStatus.CREATED);
      const exited = waitTask(client, id);
      await startTask(client, id);
      const { exitStatus } = await exited;
      expect(exitStatus).toBe(7);
      expect(readFileSync(out, 'utf8')).toContain('hello from');
      const deleted = await deleteTask(client, id);
      expect(deleted?.exitStatus).toBe(7);
      expect(await deleteTask(client, id)).toBeUndefined();
    } finally {
      await deleteTask(client, id).catch(() => undefined);
      await deleteContainerRecord(client, id);
      await removeSnapshot(client, id);
      await deleteImageRecord(client, 'berth.test/busybox:1');
    }
  });

  it('hands out leases made one ahead, and deletes a previous process\'s leftover leases', async () => {
    const ids = async (): Promise<string[]> => (await client.unary<{ leases: { id: string }[] }>('lease list', (md, cb) => client.leases.list({ filters: [] }, md, cb))).leases.map((l) => l.id);
    const berthLeases = async () => (await ids()).filter((id) => id.startsWith('berth-'));
    const pool = new LeasePool(client);
    const first = await pool.acquire();
    const second = await pool.acquire();
    expect(second.id).not.toBe(first.id);
    await new Promise((r) => setTimeout(r, 200));
    // Both in use, and no spare made while they are: its write would queue with the callers'.
    expect((await berthLeases()).sort()).toEqual([first.id, second.id].sort());
    first.release();
    second.release();
    await new Promise((r) => setTimeout(r, 200));
    // Released and deleted; one spare made for the next caller, who gets it.
    const spare = await berthLeases();
    expect(spare).toHaveLength(1);
    expect(spare).not.toContain(first.id);
    expect(spare).not.toContain(second.id);
    const third = await pool.acquire();
    expect(third.id).toBe(spare[0]);
    third.release();
    await new Promise((r) => setTimeout(r, 200));
    expect(await ids()).not.toContain(third.id);
    expect(await deleteLeftoverLeases(client)).toHaveLength(1);
    expect((await ids()).filter((id) => id.startsWith('berth-'))).toEqual([]);
  });
});
