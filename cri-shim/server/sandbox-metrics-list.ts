import type { ListPodSandboxMetricsResponse } from '../../proto/gen/runtime/v1/api.js';
import { collectPodSandboxMetrics } from '../metrics/collect.js';
import type { CriRuntime } from '../runtime.js';

// ListPodSandboxMetrics: kubelet calls it on every scrape of /metrics/cadvisor (with
// PodAndContainerStatsFromCRI); every ready pod with its running containers, read now.

export async function listPodSandboxMetrics(rt: CriRuntime): Promise<ListPodSandboxMetricsResponse> {
  return { podMetrics: await collectPodSandboxMetrics(rt) };
}
