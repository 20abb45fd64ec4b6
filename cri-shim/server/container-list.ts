import type { ListContainersRequest, ListContainersResponse } from '../../proto/gen/runtime/v1/api.js';
import { selectContainers } from '../pod/filters.js';
import { containerSummaryOf } from '../pod/status-builders.js';
import type { CriRuntime } from '../runtime.js';

// ListContainers, from the in-memory index.

export function listContainers(rt: CriRuntime, req: ListContainersRequest): ListContainersResponse {
  return { containers: selectContainers(rt, req.filter).map((c) => containerSummaryOf(rt, c)) };
}
