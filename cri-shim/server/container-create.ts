import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { stepTimer } from '../../lib/steps.js';
import type { Mount } from '../../proto/gen/github.com/containerd/containerd/api/types/mount.js';
import { ContainerEventType, ContainerState, type CreateContainerRequest, type CreateContainerResponse, NamespaceMode, PodSandboxState } from '../../proto/gen/runtime/v1/api.js';
import { createContainerRecord, deleteContainerRecord, jsonAny, specTypeUrl } from '../containerd/containers.js';
import { readRootfsFile } from '../containerd/snapshot-files.js';
import { prepareSnapshot, removeSnapshot } from '../containerd/snapshots.js';
import { buildContainerSpec } from '../oci/container-spec.js';
import { planIdmapMounts, podUserns } from '../oci/userns.js';
import { listHostDevices, statDevice } from '../oci/host-devices.js';
import { criSignalNumber, signalNumber } from '../oci/signals.js';
import { apparmorEnabled } from '../pod/apparmor.js';
import { type ImageVolume, imageVolumeKey, imageVolumeLabels, mountImageVolumes, planImageVolumes, releaseImageVolumes, withImageVolumeSources } from '../pod/image-volumes.js';
import { afterReply } from '../pod/after-reply.js';
import { containerIO } from '../pod/io-wiring.js';
import { runtimeOptions } from '../pod/runtime-handler.js';
import { sandboxFilePaths, shmPath } from '../pod/sandbox-files.js';
import { emitContainerEvent } from '../pod/status-builders.js';
import { idmapStageDir, stageIdmapMounts, unstageIdmapMounts, usernsPinPath } from '../pod/userns.js';
import { CriRuntime, extensionKey, labels, nowNanos } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';

// CreateContainer: resolve the image, prepare the rootfs snapshot (or take one prepared ahead),
// turn the CRI config into an OCI spec (cri-shim/oci, pure) and store the container record. The
// task is created at StartContainer, as containerd's CRI does.

/** CDI spec files: /etc/cdi first, /var/run/cdi overriding it. */
function cdiSpecFiles(): { path: string; content: string }[] {
  const out: { path: string; content: string }[] = [];
  for (const dir of ['/etc/cdi', '/var/run/cdi']) {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => /\.(json|ya?ml)$/.test(n)).sort();
    } catch {
      continue;
    }
    for (const n of names) out.push({ path: join(dir, n), content: readFileSync(join(dir, n), 'utf8') });
  }
  return out;
}

export async function createContainer(rt: CriRuntime, req: CreateContainerRequest): Promise<CreateContainerResponse> {
  const config = req.config;
  if (!config) throw new BerthError('invalid-argument', 'config is required');
  const meta = config.metadata;
  if (!meta?.name) throw new BerthError('invalid-argument', 'config.metadata.name is required');
  const imageName = config.image?.image ?? '';
  if (!imageName) throw new BerthError('invalid-argument', 'config.image.image is required');
  const s = rt.sandbox(req.podSandboxId);
  if (s.state !== PodSandboxState.SANDBOX_READY || s.pid === 0) {
    throw new BerthError('failed-precondition', `pod_sandbox_id: pod sandbox ${s.id} is not ready`);
  }
  const image = rt.images.find(imageName);
  if (!image) throw new BerthError('not-found', `config.image.image: image "${imageName}" not found (pull it first)`);
  // Image volumes name images kubelet pulled first; each must be here now.
  const volumePlans = planImageVolumes(config.mounts, (ref) => rt.images.find(ref));

  const sandboxMeta = s.config.metadata!;
  const name = `${meta.name}_${sandboxMeta.name}_${sandboxMeta.namespace}_${sandboxMeta.uid}_${meta.attempt}`;
  const { client } = rt;
  const { steps, lap } = stepTimer();
  // A rootfs prepared ahead on this image (pod/spare-rootfs.ts) comes with the container ID
  // that is its key; without one, the rootfs is prepared below. The name is reserved first, so a
  // name in use is refused without using up the spare.
  let id = randomBytes(32).toString('hex');
  rt.containers.names.reserve(name, id, 'container');
  const spare = await rt.spareRootfs.take(image.topChainId);
  if (spare) {
    rt.containers.names.release(name, id);
    id = spare.id;
    rt.containers.names.reserve(name, id, 'container');
  }
  const undo: (() => Promise<void>)[] = [];
  try {
    const lease = spare?.lease ?? (await rt.leases.acquire());
    lap(spare ? 'spare' : 'lease');
    undo.push(async () => lease.release());
    if (spare) undo.push(() => removeSnapshot(client, id, rt.config.snapshotter));
    const prepare = async (): Promise<Mount[]> => {
      const mounts = await prepareSnapshot(client, id, image.topChainId, { snapshotter: rt.config.snapshotter, lease: lease.id });
      undo.push(() => removeSnapshot(client, id, rt.config.snapshotter));
      return mounts;
    };
    // The image's user files come from the snapshot the first time; after that the snapshot is
    // prepared while the record is stored.
    let mounts: Mount[] | undefined = spare?.mounts;
    let userFiles = rt.userFiles.get(image.topChainId);
    if (!userFiles) {
      mounts ??= await prepare();
      userFiles = { passwd: readRootfsFile(mounts, '/etc/passwd'), group: readRootfsFile(mounts, '/etc/group') };
      rt.userFiles.set(image.topChainId, userFiles);
      lap('snapshot');
    }
    let specConfig = config;
    let imageVolumes: ImageVolume[] = [];
    if (volumePlans.length) {
      // Undone whole, even when it failed midway: every key it may have made.
      undo.push(() => releaseImageVolumes(rt, id, volumePlans.map((p) => imageVolumeKey(id, p.index))));
      const made = await mountImageVolumes(rt, id, volumePlans, lease.id);
      imageVolumes = made.volumes;
      specConfig = withImageVolumeSources(config, made.sources);
      lap('image volumes');
    }
    // Recursive read-only volumes: their read-only copies exist before the spec names them.
    const recursiveReadOnlySources = rt.recursiveReadOnly.stage(id, specConfig.mounts);
    if (recursiveReadOnlySources.size) {
      undo.push(async () => rt.recursiveReadOnly.remove(id));
      lap('rro');
    }
    const ipc = s.config.linux?.securityContext?.namespaceOptions?.ipc;
    const podNs = podUserns(s.config.linux?.securityContext?.namespaceOptions, 'pod sandbox config.linux.security_context');
    const spec = buildContainerSpec({
      id,
      config: specConfig,
      sandboxConfig: s.config,
      sandboxId: s.id,
      sandboxPid: s.pid,
      image: image.config,
      etcPasswd: userFiles.passwd,
      etcGroup: userFiles.group,
      sandboxFiles: { ...sandboxFilePaths(s.dir), shm: ipc === NamespaceMode.NODE ? '/dev/shm' : shmPath(s.dir) },
      cgroupDriver: rt.config.cgroupDriver,
      defaultCgroupParent: rt.config.defaultCgroupParent,
      minOomScoreAdj: rt.minOomScoreAdj,
      availableCapabilities: rt.availableCapabilities,
      apparmorEnabled: apparmorEnabled(),
      hostDevices: listHostDevices,
      statDevice,
      readFile: (p: string) => readFileSync(p, 'utf8'),
      usernsPath: podNs ? usernsPinPath(s.dir) : undefined,
      recursiveReadOnlySources,
      cdiSpecs: config.CDIDevices.length || Object.keys(config.annotations).some((k) => k.startsWith('cdi.k8s.io/')) ? cdiSpecFiles() : [],
    });
    // A user-namespaced container's rootfs and binds are staged idmapped mounts (pod/userns.ts).
    const stageDir = idmapStageDir(s.dir, id);
    const idmap = podNs ? planIdmapMounts(spec, stageDir) : undefined;
    lap('spec');
    const logPath = s.config.logDirectory && config.logPath ? join(s.config.logDirectory, config.logPath) : '';
    const record: ContainerRecord = {
      id,
      sandboxId: s.id,
      name,
      config,
      createdAt: nowNanos(),
      startedAt: 0n,
      finishedAt: 0n,
      exitCode: 0,
      reason: '',
      message: '',
      state: ContainerState.CONTAINER_CREATED,
      imageName,
      imageRef: [...image.repoDigests][0] ?? image.id,
      imageId: image.id,
      logPath,
      pid: 0,
      // The pod spec's stop signal (kubelet 1.33+, ContainerConfig.stop_signal) wins over the image's.
      stopSignal: criSignalNumber(config.stopSignal) ?? signalNumber(image.config.stopSignal),
      user: spec.process ? { uid: spec.process.user.uid, gid: spec.process.user.gid, additionalGids: spec.process.user.additionalGids ?? [] } : undefined,
      cgroupsPath: spec.linux?.cgroupsPath ?? '',
      ...(imageVolumes.length ? { imageVolumes } : {}),
    };
    const storeRecord = async (): Promise<void> => {
      await createContainerRecord(client, {
        id,
        labels: { [labels.kind]: 'container', [labels.sandboxId]: s.id, ...imageVolumeLabels(rt.config.snapshotter, imageVolumes) },
        image: image.id,
        runtime: runtimeOptions(rt, s.runtimeHandler),
        spec: jsonAny(specTypeUrl, spec),
        snapshotter: rt.config.snapshotter,
        snapshotKey: id,
        extensions: { [extensionKey]: CriRuntime.containerExtension(record) },
      }, { lease: lease.id });
      undo.push(() => deleteContainerRecord(client, id));
    };
    // The stdio FIFOs and the log file are set up here, off StartContainer's path (kubelet starts
    // a container right after creating it, and waits for the start), while containerd prepares
    // the snapshot and stores the record.
    const io = containerIO(rt, record);
    undo.push(() => io.close());
    // (io on the next turn of the event loop: its file system calls would hold back the requests.)
    const ioCreated = new Promise<void>((resolve) => setImmediate(resolve)).then(() => io.create());
    const [prepared, stored, opened] = await Promise.allSettled([mounts ? Promise.resolve(mounts) : prepare(), storeRecord(), ioCreated]);
    for (const r of [prepared, stored, opened]) if (r.status === 'rejected') throw r.reason;
    mounts = (prepared as PromiseFulfilledResult<Mount[]>).value;
    record.io = io;
    lap('containerd + io');
    record.rootfs = mounts;
    if (idmap) {
      undo.push(async () => unstageIdmapMounts(stageDir));
      stageIdmapMounts(stageDir, idmap, mounts, usernsPinPath(s.dir), podNs!);
      lap('idmap');
    }
    rt.containers.add(record);
    lap('record');
    // The record holds the rootfs now. The next CreateContainer on this image finds its rootfs ready.
    afterReply(() => {
      lease.release();
      rt.spareRootfs.refill(image.topChainId);
    });
    rt.log.debug({ container: id, steps }, 'CreateContainer steps (ms)');
    emitContainerEvent(rt, record, ContainerEventType.CONTAINER_CREATED_EVENT);
    rt.log.info({ container: id, name, image: imageName }, 'container created');
    return { containerId: id };
  } catch (err) {
    rt.forgetContainer(id);
    rt.containers.names.release(name, id);
    for (const step of undo.reverse()) await step().catch((e: unknown) => rt.log.warn({ container: id, err: errorMessage(e) }, 'cleanup after a failed CreateContainer'));
    throw err;
  }
}

