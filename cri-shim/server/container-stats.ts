import type { ContainerStatsRequest, ContainerStatsResponse, ListContainerStatsRequest, ListContainerStatsResponse } from '../../proto/gen/runtime/v1/api.js';
import { selectContainers } from '../pod/filters.js';
import { containersStats, statsOf } from '../pod/stats.js';
import type { CriRuntime } from '../runtime.js';

// ContainerStats and ListContainerStats.

export async function containerStats(rt: CriRuntime, req: ContainerStatsRequest): Promise<ContainerStatsResponse> {
  return { stats: await statsOf(rt, rt.container(req.containerId)) };
}

export async function listContainerStats(rt: CriRuntime, req: ListContainerStatsRequest): Promise<ListContainerStatsResponse> {
  return { stats: await containersStats(rt, selectContainers(rt, req.filter)) };
}
