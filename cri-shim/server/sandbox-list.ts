import type { ListPodSandboxRequest, ListPodSandboxResponse } from '../../proto/gen/runtime/v1/api.js';
import { selectSandboxes } from '../pod/filters.js';
import { sandboxSummaryOf } from '../pod/status-builders.js';
import type { CriRuntime } from '../runtime.js';

// ListPodSandbox, from the in-memory index.

export function listPodSandbox(rt: CriRuntime, req: ListPodSandboxRequest): ListPodSandboxResponse {
  return { items: selectSandboxes(rt, req.filter).map(sandboxSummaryOf) };
}
