import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { createNetns, deleteNetns } from '../../lib/netns.js';
import { stepTimer } from '../../lib/steps.js';
import { NamespaceMode, PodSandboxState, type RunPodSandboxRequest, type RunPodSandboxResponse } from '../../proto/gen/runtime/v1/api.js';
import { createContainerRecord, deleteContainerRecord, jsonAny, specTypeUrl } from '../containerd/containers.js';
import { prepareSnapshot, removeSnapshot } from '../containerd/snapshots.js';
import { createTask, deleteTask, killTask, startTask } from '../containerd/tasks.js';
import { podBandwidth } from '../cni/bandwidth.js';
import { buildSandboxSpec } from '../oci/sandbox-spec.js';
import { planIdmapMounts, podUserns } from '../oci/userns.js';
import { apparmorEnabled } from '../pod/apparmor.js';
import { ensureImage } from '../pod/puller.js';
import { runtimeOptions } from '../pod/runtime-handler.js';
import { isHostNetwork, mountShm, netnsPathFor, removeSandboxFiles, writeSandboxFiles } from '../pod/sandbox-files.js';
import { watchSandboxExit } from '../pod/task-exit.js';
import { createPodUserns, deletePodUserns, idmapStageDir, stageIdmapMounts, unstageIdmapMounts, usernsUnsupported } from '../pod/userns.js';
import { CriRuntime, extensionKey, labels, nowNanos } from '../runtime.js';
import type { SandboxRecord } from '../store/records.js';

// RunPodSandbox: the pause container holds the pod's namespaces. berth makes the network
// namespace itself (pinned by a bind mount, so no PID can be confused with it), runs CNI ADD in
// it while containerd creates the pause task joined to it, and starts the pause only when both
// succeeded. Everything made is undone if a later step fails.

export function sandboxName(req: RunPodSandboxRequest): string {
  const meta = req.config?.metadata;
  if (!req.config) throw new BerthError('invalid-argument', 'config is required');
  if (!meta) throw new BerthError('invalid-argument', 'config.metadata is required');
  for (const field of ['name', 'namespace', 'uid'] as const) {
    if (!meta[field]) throw new BerthError('invalid-argument', `config.metadata.${field} is required`);
  }
  return `${meta.name}_${meta.namespace}_${meta.uid}_${meta.attempt}`;
}

export async function runPodSandbox(rt: CriRuntime, req: RunPodSandboxRequest): Promise<RunPodSandboxResponse> {
  const name = sandboxName(req);
  const config = req.config!;
  const handler = req.runtimeHandler || rt.config.defaultRuntimeHandler;
  if (!rt.config.runtimeHandlers[handler]) {
    throw new BerthError('invalid-argument', `runtime_handler: "${handler}" is not configured (have: ${Object.keys(rt.config.runtimeHandlers).join(', ')})`);
  }
  // Refused before anything is made; a handler that cannot is refused when the spec is built.
  const userns = podUserns(config.linux?.securityContext?.namespaceOptions, 'config.linux.security_context');
  const usernsWhyNot = userns ? usernsUnsupported(rt, handler) : '';
  // A bad bandwidth annotation is refused before anything is made (CNI ADD would refuse it late).
  podBandwidth(config.annotations);
  const id = randomBytes(32).toString('hex');
  rt.sandboxes.names.reserve(name, id, 'pod sandbox');
  const { client } = rt;
  const hostNetwork = isHostNetwork(config);
  const record: SandboxRecord = {
    id,
    name,
    config,
    createdAt: nowNanos(),
    runtimeHandler: handler,
    state: PodSandboxState.SANDBOX_NOTREADY,
    pid: 0,
    netnsPath: '',
    ips: [],
    dir: join(rt.config.root, 'sandboxes', id),
    networkDown: hostNetwork,
    cgroupsPath: '',
  };
  const undo: (() => Promise<void>)[] = [];
  const { steps, lap } = stepTimer();
  try {
    const image = await ensureImage(rt, rt.config.sandboxImage);
    lap('image');
    let usernsPath: string | undefined;
    if (!hostNetwork) {
      record.netnsPath = netnsPathFor(rt, id);
      if (userns && !usernsWhyNot) {
        // The pod's netns is made inside its user namespace, which owns it.
        usernsPath = createPodUserns(record.dir, record.netnsPath, userns);
        undo.push(async () => deletePodUserns(record.dir));
      } else {
        createNetns(record.netnsPath);
      }
      undo.push(async () => deleteNetns(record.netnsPath));
    }
    const files = writeSandboxFiles(record.dir, config);
    undo.push(() => removeSandboxFiles(record.dir));
    if (config.linux?.securityContext?.namespaceOptions?.ipc !== NamespaceMode.NODE) await mountShm(record.dir);
    if (config.logDirectory && !existsSync(config.logDirectory)) mkdirSync(config.logDirectory, { recursive: true, mode: 0o755 });

    lap('files');
    const spec = buildSandboxSpec({
      id,
      config,
      image: image.config,
      netnsPath: hostNetwork ? undefined : record.netnsPath,
      cgroupDriver: rt.config.cgroupDriver,
      defaultCgroupParent: rt.config.defaultCgroupParent,
      minOomScoreAdj: rt.minOomScoreAdj,
      availableCapabilities: rt.availableCapabilities,
      sandboxFiles: { ...files, shm: '' },
      apparmorEnabled: apparmorEnabled(),
      readFile: (p: string) => readFileSync(p, 'utf8'),
      usernsPath,
      usernsUnsupported: usernsWhyNot,
    });
    const stageDir = idmapStageDir(record.dir, id);
    const idmap = userns && usernsPath ? planIdmapMounts(spec, stageDir) : undefined;
    record.cgroupsPath = spec.linux?.cgroupsPath ?? '';
    lap('spec');
    const lease = await rt.leases.acquire();
    undo.push(async () => lease.release());
    // Both under the lease, so neither order of completion leaves the snapshot collectable.
    const [prepared, stored] = await Promise.allSettled([
      prepareSnapshot(client, id, image.topChainId, { snapshotter: rt.config.snapshotter, lease: lease.id }).then((mounts) => {
        undo.push(() => removeSnapshot(client, id, rt.config.snapshotter));
        return mounts;
      }),
      createContainerRecord(client, {
        id,
        labels: { [labels.kind]: 'sandbox', [labels.sandboxId]: id },
        image: image.id,
        runtime: runtimeOptions(rt, handler),
        spec: jsonAny(specTypeUrl, spec),
        snapshotter: rt.config.snapshotter,
        snapshotKey: id,
        extensions: { [extensionKey]: CriRuntime.sandboxExtension(record) },
      }, { lease: lease.id }).then(() => undo.push(() => deleteContainerRecord(client, id))),
    ]);
    if (prepared.status === 'rejected') throw prepared.reason;
    if (stored.status === 'rejected') throw stored.reason;
    const mounts = prepared.value;
    lease.release();
    if (idmap) {
      undo.push(async () => unstageIdmapMounts(stageDir));
      stageIdmapMounts(stageDir, idmap, mounts, usernsPath!, userns!);
    }
    lap('record');
    // The pod's network namespace is ours (pinned under the state dir), so CNI ADD runs while
    // containerd starts the shim and creates the pause task in it: the two slow steps overlap.
    const setUpNetwork = async (): Promise<void> => {
      if (hostNetwork) return;
      const attachment = { sandboxId: id, netnsPath: record.netnsPath, config, cgroupParent: config.linux?.cgroupParent };
      undo.push(() => rt.network.tearDown(attachment));
      record.ips = await rt.network.setUp(attachment);
    };
    const createPause = async (): Promise<void> => {
      // A user-namespaced pause gets its staged rootfs through the spec's root.path.
      record.pid = await createTask(client, id, idmap ? [] : mounts, {});
      undo.push(async () => {
        await killTask(client, id, 9, { all: true });
        await deleteTask(client, id);
      });
    };
    const [pause, network] = await Promise.allSettled([createPause(), setUpNetwork()]);
    if (pause.status === 'rejected') throw pause.reason;
    if (network.status === 'rejected') throw network.reason;
    lap('task+network');
    await startTask(client, id);
    lap('start');
    record.state = PodSandboxState.SANDBOX_READY;
    rt.sandboxes.add(record);
    await rt.persistSandbox(record);
    watchSandboxExit(rt, record);
    lap('persist');
    rt.log.debug({ sandbox: id, steps }, 'RunPodSandbox steps (ms)');
    rt.log.info({ sandbox: id, pod: name, ips: record.ips, pid: record.pid }, 'pod sandbox running');
    return { podSandboxId: id };
  } catch (err) {
    rt.forgetSandbox(id);
    rt.sandboxes.names.release(name, id);
    for (const step of undo.reverse()) {
      await step().catch((e: unknown) => rt.log.warn({ sandbox: id, err: errorMessage(e) }, 'cleanup after a failed RunPodSandbox'));
    }
    throw err;
  }
}
