import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../lib/errors.js';
import { deleteNetns } from '../lib/netns.js';
import { Kind } from '../proto/gen/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.js';
import type { Process } from '../proto/gen/github.com/containerd/containerd/api/types/task/task.js';
import { ContainerState, PodSandboxConfig, PodSandboxState } from '../proto/gen/runtime/v1/api.js';
import { decodeJsonAny, listContainerRecords } from './containerd/containers.js';
import { deleteLeftoverLeases } from './containerd/leases.js';
import { listSnapshots, prepareSnapshot, removeSnapshot } from './containerd/snapshots.js';
import { deleteTask, getTask, killTask, TaskStatus } from './containerd/tasks.js';
import { ContainerIO } from './io/container-io.js';
import { ensureUnpacked } from './pod/image-events.js';
import { reconcileImageVolumes, remountImageVolumes } from './pod/image-volumes.js';
import { containerIOOptions, ioDir } from './pod/io-wiring.js';
import { clearRemoved, removedIds } from './pod/removed.js';
import { removeSandboxFiles } from './pod/sandbox-files.js';
import { watchContainerExit, watchSandboxExit } from './pod/task-exit.js';
import { finishRemoval } from './pod/teardown.js';
import { strayStageDirs, unstageIdmapMounts } from './pod/userns.js';
import { type CriRuntime, extensionKey, labels } from './runtime.js';
import { containerFromJson, sandboxFromJson } from './store/records.js';

// Start-up: rebuild the index from containerd. Every sandbox and container record carries its
// CRI state in an extension; the live task says whether it still runs. Running containers get
// their FIFOs reopened (the shim kept them) so logs continue where they stopped; containers whose
// task exited while berth-cri was down get their exit recorded now.

/**
 * A task's state, waiting out UNKNOWN: a shim busy finishing a create that our death cancelled
 * answers UNKNOWN (pid 0) for a few seconds, then the truth.
 */
async function settledTask(rt: CriRuntime, id: string, timeoutMs = 15_000): Promise<Process | undefined> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const task = await getTask(rt.client, id);
    if (!task || task.status !== TaskStatus.UNKNOWN || Date.now() > until) return task;
    await sleep(250);
  }
}

/**
 * CNI plugins started by a berth-cri that was killed keep running to completion. Wait for those
 * acting on our pods (their environment names the pod) before deciding anything about the
 * network, so a DEL issued now cannot be overtaken by an orphaned ADD.
 */
async function waitForOrphanedCniCalls(rt: CriRuntime, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  const ours = (pid: string): boolean => {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const id = env.find((e) => e.startsWith('CNI_CONTAINERID='))?.slice('CNI_CONTAINERID='.length);
      return !!id && env.some((e) => e.startsWith('CNI_COMMAND=')) && rt.sandboxes.find(id)?.id === id;
    } catch {
      return false;
    }
  };
  for (;;) {
    const running = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && p !== String(process.pid) && ours(p));
    if (running.length === 0) return;
    if (Date.now() > until) {
      rt.log.warn({ pids: running }, 'CNI calls of the previous berth-cri still running; going on');
      return;
    }
    rt.log.info({ pids: running }, 'waiting for CNI calls of the previous berth-cri to finish');
    await sleep(200);
  }
}

export async function recover(rt: CriRuntime): Promise<{ sandboxes: number; containers: number }> {
  await rt.images.load();
  // An image adopted from another client may have come without its snapshots.
  for (const entry of rt.images.all()) {
    await ensureUnpacked(rt, entry).catch((err: unknown) => rt.log.warn({ id: entry.id, err: errorMessage(err) }, 'cannot unpack an adopted image'));
  }
  const listed = await listContainerRecords(rt.client, [`labels."${labels.kind}"`]);
  // Containers RemoveContainer had already removed when the previous process went down: their
  // removal is finished now, not undone (pod/removed.ts).
  const removed = removedIds(rt);
  for (const r of listed.filter((r) => removed.has(r.id))) {
    rt.log.info({ container: r.id }, 'finishing the removal of a container removed before a restart');
    await deleteTask(rt.client, r.id).catch(() => undefined);
    await finishRemoval(rt, r.id);
  }
  for (const id of removed) if (!listed.some((r) => r.id === id)) clearRemoved(rt, id);
  const records = listed.filter((r) => !removed.has(r.id));
  for (const r of records.filter((r) => r.labels[labels.kind] === 'sandbox')) {
    const json = decodeJsonAny<Record<string, unknown>>(r.extensions[extensionKey]);
    if (!json) {
      rt.log.warn({ id: r.id }, 'sandbox record without berth state: ignored');
      continue;
    }
    const s = sandboxFromJson(json);
    const task = await settledTask(rt, s.id);
    rt.log.debug({ sandbox: s.id, task: task ? TaskStatus[task.status] : 'none', recorded: PodSandboxState[s.state] }, 'recovering pod sandbox');
    if (task && task.status === TaskStatus.RUNNING && s.state === PodSandboxState.SANDBOX_READY) {
      s.pid = task.pid;
      watchSandboxExit(rt, s);
    } else {
      // A sandbox whose pause died while we were away: kubelet will stop and remove it.
      s.state = PodSandboxState.SANDBOX_NOTREADY;
      s.pid = 0;
    }
    rt.sandboxes.add(s);
    rt.sandboxes.names.reserve(s.name, s.id, 'pod sandbox');
  }
  for (const r of records.filter((r) => r.labels[labels.kind] === 'container')) {
    const json = decodeJsonAny<Record<string, unknown>>(r.extensions[extensionKey]);
    if (!json) continue;
    const c = containerFromJson(json);
    rt.containers.add(c);
    rt.containers.names.reserve(c.name, c.id, 'container');
    if (c.state !== ContainerState.CONTAINER_RUNNING && c.state !== ContainerState.CONTAINER_CREATED) continue;
    const task = await settledTask(rt, c.id);
    if (c.state === ContainerState.CONTAINER_CREATED) {
      // Started, but the record was not updated before we went down: the task tells.
      if (!task) continue;
      if (task.status === TaskStatus.CREATED) {
        // Killed between creating and starting the task: undo it, so StartContainer can redo it.
        await killTask(rt.client, c.id, 9, { all: true }).catch(() => undefined);
        await deleteTask(rt.client, c.id).catch(() => undefined);
        continue;
      }
      c.state = ContainerState.CONTAINER_RUNNING;
      c.startedAt = c.startedAt || c.createdAt;
    }
    try {
      c.io = await ContainerIO.reattach(containerIOOptions(rt, c));
    } catch (err) {
      rt.log.warn({ container: c.id, err: errorMessage(err) }, 'cannot reopen container I/O; its output until exit is lost');
    }
    if (task && task.status === TaskStatus.RUNNING) c.pid = task.pid;
    // Wait returns at once for a stopped task, so this records exits that happened while down.
    watchContainerExit(rt, c);
  }
  // What a crash between preparing a rootfs and storing its record left: the lease that held the
  // snapshot, and the snapshot itself (and any half-unpacked layer of an interrupted pull).
  const leases = await deleteLeftoverLeases(rt.client);
  if (leases.length) rt.log.info({ leases }, 'deleted the leases of a previous berth-cri process');
  const ids = new Set(records.map((r) => r.id));
  const snapshots = await listSnapshots(rt.client, rt.config.snapshotter);
  for (const snap of snapshots) {
    if (snap.kind !== Kind.ACTIVE || ids.has(snap.name)) continue;
    rt.log.info({ snapshot: snap.name }, 'removing a snapshot no container record refers to');
    await removeSnapshot(rt.client, snap.name, rt.config.snapshotter).catch((err: unknown) => rt.log.warn({ snapshot: snap.name, err: errorMessage(err) }, 'cannot remove a leftover snapshot'));
  }
  // The opposite crash: CreateContainer stores the record while the snapshot is prepared, so a
  // created container may lack its rootfs. Prepare it now (the record already protects it).
  const present = new Set(snapshots.map((s) => s.name));
  for (const c of rt.containers.all().filter((c) => c.state === ContainerState.CONTAINER_CREATED && !present.has(c.id))) {
    const image = rt.images.byImageId(c.imageId);
    try {
      if (!image) throw new Error(`its image ${c.imageId} is gone`);
      c.rootfs = await prepareSnapshot(rt.client, c.id, image.topChainId, { snapshotter: rt.config.snapshotter });
      rt.log.info({ container: c.id }, 'prepared the rootfs of a container created just before a crash');
    } catch (err) {
      rt.log.warn({ container: c.id, err: errorMessage(err) }, 'cannot prepare the rootfs of a created container; StartContainer will fail and kubelet will recreate it');
    }
  }
  // Staged idmapped mounts of containers that were never recorded, or whose removal a crash cut.
  for (const s of rt.sandboxes.all()) {
    const live = new Set([s.id, ...rt.containersOf(s.id).map((c) => c.id)]);
    for (const dir of strayStageDirs(s.dir, live)) {
      rt.log.info({ dir }, 'removing the idmapped mounts of a container that no longer exists');
      try {
        unstageIdmapMounts(dir);
      } catch (err) {
        rt.log.warn({ dir, err: errorMessage(err) }, 'cannot remove leftover idmapped mounts');
      }
    }
  }
  // Image volumes: those of containers that are gone come off the host and their views go; a
  // created container whose volumes a reboot unmounted gets them back before it starts.
  await reconcileImageVolumes(rt, new Set(rt.containers.all().map((c) => c.id))).catch((err: unknown) => rt.log.warn({ err: errorMessage(err) }, 'cannot reconcile image volumes'));
  for (const c of rt.containers.all().filter((c) => c.state === ContainerState.CONTAINER_CREATED && c.imageVolumes?.length)) {
    await remountImageVolumes(rt, c.id, c.imageVolumes!).catch((err: unknown) =>
      rt.log.warn({ container: c.id, err: errorMessage(err) }, 'cannot mount the image volumes of a created container; StartContainer will fail and kubelet will recreate it'),
    );
  }
  // Sandbox directories whose pod is gone (a crash between steps): unmount and delete them.
  const known = new Set(rt.sandboxes.all().map((s) => s.dir));
  const root = join(rt.config.root, 'sandboxes');
  for (const name of existsSync(root) ? readdirSync(root) : []) {
    const dir = join(root, name);
    if (known.has(dir)) continue;
    rt.log.info({ dir }, 'removing the files of a pod sandbox that no longer exists');
    await removeSandboxFiles(dir).catch((err: unknown) => rt.log.warn({ dir, err: errorMessage(err) }, 'cannot remove leftover sandbox files'));
  }
  // Read-only copies staged for recursive read-only volumes of containers that are gone (a crash
  // in CreateContainer, or in RemoveContainer after the record went).
  try {
    const orphans = rt.recursiveReadOnly.removeOrphans(new Set(rt.containers.all().map((c) => c.id)));
    if (orphans.length) rt.log.info({ containers: orphans }, 'removed the staged recursive read-only mounts of containers that no longer exist');
  } catch (err) {
    rt.log.warn({ err: errorMessage(err) }, 'cannot remove leftover recursive read-only mounts');
  }
  // FIFOs of containers that no longer exist, and of every exec: an exec's client was
  // connected to the daemon that died, so nothing will read them again.
  const ioRoot = ioDir(rt);
  const live = new Set(rt.containers.all().map((c) => c.id));
  for (const name of existsSync(ioRoot) ? readdirSync(ioRoot) : []) {
    if (!live.has(name.slice(0, 64)) || name.slice(64).startsWith('-exec-')) rmSync(join(ioRoot, name), { force: true });
  }
  await waitForOrphanedCniCalls(rt);
  // Pinned network namespaces of pods that are gone, or whose network is already down.
  const netnsRoot = join(rt.config.state, 'netns');
  for (const name of existsSync(netnsRoot) ? readdirSync(netnsRoot) : []) {
    const s = rt.sandboxes.find(name);
    if (s && s.id === name && !s.networkDown) continue;
    // A pod whose network is still attached keeps its namespace until the DEL below ran.
    if (rt.network.cachedAttachments().some((a) => a.containerId === name)) continue;
    deleteNetns(join(netnsRoot, name));
  }
  // Pod network attachments whose pod is gone or already torn down (a crash between CNI ADD and
  // recording it, or during StopPodSandbox): DEL them now so no IP, veth or rule is leaked.
  for (const attachment of rt.network.cachedAttachments()) {
    const s = rt.sandboxes.find(attachment.containerId);
    if (s && s.id === attachment.containerId && !s.networkDown) continue;
    rt.log.info({ sandbox: attachment.containerId, network: attachment.networkName }, 'deleting a leftover pod network attachment');
    await rt.network
      .tearDown({ sandboxId: attachment.containerId, netnsPath: existsSync(join(netnsRoot, attachment.containerId)) ? join(netnsRoot, attachment.containerId) : '', config: s?.config ?? PodSandboxConfig.fromPartial({}) })
      .catch((err: unknown) => rt.log.warn({ sandbox: attachment.containerId, err: errorMessage(err) }, 'cannot delete a leftover pod network attachment'));
    if (!s || s.id !== attachment.containerId) deleteNetns(join(netnsRoot, attachment.containerId));
  }
  return { sandboxes: rt.sandboxes.all().length, containers: rt.containers.all().length };
}
