import { type Container, type ContainerEventType, ContainerState, type ContainerStatus, NamespaceMode, type PodSandbox, type PodSandboxStatus } from '../../proto/gen/runtime/v1/api.js';
import { criSignalOf } from '../oci/signals.js';
import { type CriRuntime, nowNanos } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';

// CRI messages built from berth's records, shared by the status, list and event RPCs so that
// every path reports the same thing.

export function sandboxStatusOf(s: SandboxRecord): PodSandboxStatus {
  const ns = s.config.linux?.securityContext?.namespaceOptions;
  const [ip, ...additional] = s.ips;
  return {
    id: s.id,
    metadata: s.config.metadata,
    state: s.state,
    createdAt: s.createdAt,
    network: { ip: ip ?? '', additionalIps: additional.map((a) => ({ ip: a })) },
    linux: {
      namespaces: {
        options: {
          network: ns?.network ?? NamespaceMode.POD,
          pid: ns?.pid ?? NamespaceMode.POD,
          ipc: ns?.ipc ?? NamespaceMode.POD,
          targetId: ns?.targetId ?? '',
          usernsOptions: ns?.usernsOptions,
        },
      },
    },
    labels: s.config.labels,
    annotations: s.config.annotations,
    runtimeHandler: s.runtimeHandler,
  };
}

export function sandboxSummaryOf(s: SandboxRecord): PodSandbox {
  return {
    id: s.id,
    metadata: s.config.metadata,
    state: s.state,
    createdAt: s.createdAt,
    labels: s.config.labels,
    annotations: s.config.annotations,
    runtimeHandler: s.runtimeHandler,
  };
}

export function imageSpecOf(rt: CriRuntime, c: ContainerRecord): { image: string; annotations: Record<string, string>; userSpecifiedImage: string; runtimeHandler: string; imageRef: string } {
  const image = rt.images.byImageId(c.imageId);
  // kubelet shows the name the user gave; a tag of the same image is the next best thing.
  const name = c.imageName || (image ? ([...image.repoTags][0] ?? c.imageId) : c.imageId);
  return { image: name, annotations: c.config.image?.annotations ?? {}, userSpecifiedImage: c.config.image?.userSpecifiedImage ?? '', runtimeHandler: '', imageRef: c.imageRef };
}

export function containerStatusOf(rt: CriRuntime, c: ContainerRecord): ContainerStatus {
  return {
    id: c.id,
    metadata: c.config.metadata,
    state: c.state,
    createdAt: c.createdAt,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    exitCode: c.exitCode,
    image: imageSpecOf(rt, c),
    imageRef: c.imageRef,
    reason: c.reason,
    message: c.message,
    labels: c.config.labels,
    annotations: c.config.annotations,
    mounts: c.config.mounts,
    logPath: c.logPath,
    resources: c.config.linux?.resources ? { linux: c.config.linux.resources, windows: undefined } : undefined,
    imageId: c.imageId,
    user: c.user ? { linux: { uid: BigInt(c.user.uid), gid: BigInt(c.user.gid), supplementalGroups: c.user.additionalGids.map(BigInt) } } : undefined,
    stopSignal: criSignalOf(c.stopSignal),
  };
}

export function containerSummaryOf(rt: CriRuntime, c: ContainerRecord): Container {
  return {
    id: c.id,
    podSandboxId: c.sandboxId,
    metadata: c.config.metadata,
    image: imageSpecOf(rt, c),
    imageRef: c.imageRef,
    state: c.state,
    createdAt: c.createdAt,
    labels: c.config.labels,
    annotations: c.config.annotations,
    imageId: c.imageId,
  };
}

export function isRunning(c: ContainerRecord): boolean {
  return c.state === ContainerState.CONTAINER_RUNNING;
}

/** Tells GetContainerEvents subscribers about a container's lifecycle step. */
export function emitContainerEvent(rt: CriRuntime, c: ContainerRecord, type: ContainerEventType): void {
  const sandbox = rt.sandboxes.find(c.sandboxId);
  rt.events.emit({
    containerId: c.id,
    containerEventType: type,
    createdAt: nowNanos(),
    podSandboxStatus: sandbox ? sandboxStatusOf(sandbox) : undefined,
    containersStatuses: [containerStatusOf(rt, c)],
  });
}
