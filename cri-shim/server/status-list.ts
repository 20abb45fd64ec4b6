import {
  type ContainerState,
  type PodSandboxState,
  type ContainerStatusRequest,
  type ContainerStatusResponse,
  type ListContainersRequest,
  type ListContainersResponse,
  type ListPodSandboxRequest,
  type ListPodSandboxResponse,
  type PodSandboxStatusRequest,
  type PodSandboxStatusResponse,
} from '../../proto/gen/runtime/v1/api.js';
import { nowNanos, type CriRuntime } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';
import { containerStatusOf, containerSummaryOf, sandboxStatusOf, sandboxSummaryOf } from './status-builders.js';

// PodSandboxStatus, ListPodSandbox, ContainerStatus, ListContainers: answered from the
// in-memory index, which exit handling and every mutation keep current.

function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** The filter fields of ListPodSandbox and ListPodSandboxStats; IDs match by prefix as crictl expects. */
export interface SandboxFilter {
  id?: string;
  state?: { state: PodSandboxState };
  labelSelector?: Record<string, string>;
}

export function selectSandboxes(rt: CriRuntime, f: SandboxFilter | undefined): SandboxRecord[] {
  return rt.sandboxes
    .all()
    .filter((s) => !f?.id || s.id.startsWith(f.id))
    .filter((s) => f?.state === undefined || s.state === f.state.state)
    .filter((s) => labelsMatch(f?.labelSelector, s.config.labels))
    .sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1));
}

/** The filter fields of ListContainers and ListContainerStats. */
export interface ContainerFilter {
  id?: string;
  podSandboxId?: string;
  state?: { state: ContainerState };
  labelSelector?: Record<string, string>;
}

export function selectContainers(rt: CriRuntime, f: ContainerFilter | undefined): ContainerRecord[] {
  return rt.containers
    .all()
    .filter((c) => !f?.id || c.id.startsWith(f.id))
    .filter((c) => !f?.podSandboxId || c.sandboxId.startsWith(f.podSandboxId))
    .filter((c) => f?.state === undefined || c.state === f.state.state)
    .filter((c) => labelsMatch(f?.labelSelector, c.config.labels))
    .sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1));
}

export function podSandboxStatus(rt: CriRuntime, req: PodSandboxStatusRequest): PodSandboxStatusResponse {
  const s = rt.sandbox(req.podSandboxId);
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      pid: s.pid,
      netns: s.netnsPath,
      runtimeHandler: s.runtimeHandler,
      cgroupsPath: s.cgroupsPath,
      sandboxDir: s.dir,
      networkDown: s.networkDown,
      containers: rt.containersOf(s.id).map((c) => c.id),
    });
  }
  return { status: sandboxStatusOf(s), info, containersStatuses: [], timestamp: nowNanos() };
}

export function listPodSandbox(rt: CriRuntime, req: ListPodSandboxRequest): ListPodSandboxResponse {
  return { items: selectSandboxes(rt, req.filter).map(sandboxSummaryOf) };
}

export function containerStatus(rt: CriRuntime, req: ContainerStatusRequest): ContainerStatusResponse {
  const c = rt.container(req.containerId);
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({ pid: c.pid, sandboxId: c.sandboxId, cgroupsPath: c.cgroupsPath, imageName: c.imageName, name: c.name });
  }
  return { status: containerStatusOf(rt, c), info };
}

export function listContainers(rt: CriRuntime, req: ListContainersRequest): ListContainersResponse {
  return { containers: selectContainers(rt, req.filter).map((c) => containerSummaryOf(rt, c)) };
}
