import type { ContainerState, PodSandboxState } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord, SandboxRecord } from '../store/records.js';

// The filters of the List RPCs (pods, containers and their stats) over the in-memory index.

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
