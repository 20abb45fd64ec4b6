import type { ListPodSandboxStatsRequest, ListPodSandboxStatsResponse, PodSandboxStatsRequest, PodSandboxStatsResponse } from '../../proto/gen/runtime/v1/api.js';
import { selectSandboxes } from '../pod/filters.js';
import { podsStats, podStatsOf } from '../pod/stats.js';
import type { CriRuntime } from '../runtime.js';

// PodSandboxStats and ListPodSandboxStats.

export async function podSandboxStats(rt: CriRuntime, req: PodSandboxStatsRequest): Promise<PodSandboxStatsResponse> {
  return { stats: await podStatsOf(rt, rt.sandbox(req.podSandboxId)) };
}

export async function listPodSandboxStats(rt: CriRuntime, req: ListPodSandboxStatsRequest): Promise<ListPodSandboxStatsResponse> {
  return { stats: await podsStats(rt, selectSandboxes(rt, req.filter)) };
}
