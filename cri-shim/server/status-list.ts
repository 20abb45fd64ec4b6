import {
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
import { containerStatusOf, containerSummaryOf, sandboxStatusOf, sandboxSummaryOf } from './status-builders.js';

// PodSandboxStatus, ListPodSandbox, ContainerStatus, ListContainers: answered from the
// in-memory index, which exit handling and every mutation keep current.

function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
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
  const f = req.filter;
  const items = rt.sandboxes
    .all()
    .filter((s) => !f?.id || s.id === f.id || s.id.startsWith(f.id))
    .filter((s) => f?.state === undefined || s.state === f.state.state)
    .filter((s) => labelsMatch(f?.labelSelector, s.config.labels))
    .sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1))
    .map(sandboxSummaryOf);
  return { items };
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
  const f = req.filter;
  const containers = rt.containers
    .all()
    .filter((c) => !f?.id || c.id === f.id || c.id.startsWith(f.id))
    .filter((c) => !f?.podSandboxId || c.sandboxId === f.podSandboxId || c.sandboxId.startsWith(f.podSandboxId))
    .filter((c) => f?.state === undefined || c.state === f.state.state)
    .filter((c) => labelsMatch(f?.labelSelector, c.config.labels))
    .sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1))
    .map((c) => containerSummaryOf(rt, c));
  return { containers };
}
