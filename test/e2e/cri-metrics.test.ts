import { execFileSync } from 'node:child_process';
import { readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import type { Metric, MetricDescriptor, PodSandboxMetrics } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, podSandboxConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// ListMetricDescriptors and ListPodSandboxMetrics as kubelet's /metrics/cadvisor collector reads
// them (PodAndContainerStatsFromCRI), and berth-cri's own /metrics on --metrics-addr.

let world: CriWorld;
// The pod gets its own cgroup parent, as kubelet gives every pod, so pod-level series exist.
const parentTop = `/berth-e2e-metrics-${process.pid}`;
const cgroupParent = `${parentTop}/pod1`;

/** runc leaves the pod's parent cgroups behind (kubelet removes them): removed in every hierarchy. */
function removeParentCgroups(): void {
  let hierarchies: string[];
  try {
    hierarchies = readdirSync('/sys/fs/cgroup').map((h) => join('/sys/fs/cgroup', h));
  } catch {
    return;
  }
  for (const base of ['/sys/fs/cgroup', ...hierarchies]) {
    for (const dir of [cgroupParent, parentTop]) {
      try {
        rmdirSync(join(base, dir));
      } catch {
        // not there in this hierarchy
      }
    }
  }
}

function metricsPort(): number {
  for (const line of world.criLog().split('\n')) {
    if (!line.includes('serving /metrics')) continue;
    const port = (JSON.parse(line) as { port?: number }).port;
    if (port) return port;
  }
  throw new Error('berth-cri did not log its metrics port');
}

/** One sample's value from Prometheus text, 0 when absent. */
function sampleValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function scrape(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort()}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

const labelsOf = (d: MetricDescriptor, m: Metric): Record<string, string> => Object.fromEntries(d.labelKeys.map((k, i) => [k, m.labelValues[i]!]));

describe.skipIf(!isRoot)('berth-cri metrics', () => {
  useCriWorld(['busybox'], (w) => (world = w), { flags: ['--metrics-addr', '127.0.0.1:0'] });
  afterAll(removeParentCgroups);

  it('reports CPU, memory, filesystem and per-interface network metrics with the pod\'s labels', async () => {
    const { descriptors } = await world.runtime.listMetricDescriptors({});
    const byName = new Map(descriptors.map((d) => [d.name, d]));
    expect(byName.get('container_cpu_usage_seconds_total')?.labelKeys).toEqual(['container', 'id', 'image', 'name', 'namespace', 'pod', 'cpu']);

    const pod = podSandboxConfig(world, 'metrics-pod', {});
    pod.linux = { ...pod.linux!, cgroupParent };
    // 16 MB written into the writable layer (page cache charged to the container), then a busy loop.
    const c = await startContainer(
      world,
      containerConfig('burner', world.image('busybox'), { command: ['sh', '-c', 'head -c 16000000 /dev/zero > /fill; while :; do :; done'] }),
      pod,
    );
    const { status } = await world.runtime.podSandboxStatus({ podSandboxId: c.podId, verbose: false });
    execFileSync('ping', ['-c', '3', '-i', '0.2', '-s', '1000', status!.network!.ip]);

    // Whole CPU seconds: wait until the busy loop has used one.
    let mine: PodSandboxMetrics | undefined;
    let cpu: Metric | undefined;
    for (let i = 0; i < 60; i++) {
      const { podMetrics } = await world.runtime.listPodSandboxMetrics({});
      mine = podMetrics.find((p) => p.podSandboxId === c.podId);
      cpu = mine?.containerMetrics.find((m) => m.containerId === c.id)?.metrics.find((m) => m.name === 'container_cpu_usage_seconds_total');
      if (cpu && cpu.value!.value >= 1n) break;
      await sleep(500);
    }
    expect(mine, 'the pod is listed').toBeDefined();
    expect(cpu?.value?.value).toBeGreaterThanOrEqual(1n);
    // For the record (not asserted): what one call costs with this one pod.
    const started = performance.now();
    const { podMetrics: again } = await world.runtime.listPodSandboxMetrics({});
    console.log(`ListPodSandboxMetrics: ${(performance.now() - started).toFixed(1)} ms for ${again.length} pod(s), ${again.reduce((n, p) => n + p.metrics.length + p.containerMetrics.reduce((k, c) => k + c.metrics.length, 0), 0)} metrics`);

    // Every metric has its descriptor and one label value per key, as kubelet requires.
    const all = [...mine!.metrics, ...mine!.containerMetrics.flatMap((m) => m.metrics)];
    for (const m of all) {
      const d = byName.get(m.name);
      expect(d, m.name).toBeDefined();
      expect(m.labelValues.length, m.name).toBe(d!.labelKeys.length);
      expect(m.timestamp, m.name).toBeGreaterThan(0n);
    }

    const containerMetrics = mine!.containerMetrics.find((m) => m.containerId === c.id)!.metrics;
    const get = (ms: Metric[], name: string): Metric | undefined => ms.find((m) => m.name === name);
    expect(labelsOf(byName.get('container_cpu_usage_seconds_total')!, cpu!)).toEqual({
      container: 'burner', id: c.id, image: world.image('busybox'), name: c.id, namespace: 'berth-e2e', pod: 'metrics-pod', cpu: 'total',
    });
    expect(get(containerMetrics, 'container_memory_usage_bytes')?.value?.value).toBeGreaterThan(8_000_000n);
    expect(get(containerMetrics, 'container_memory_working_set_bytes')?.value?.value).toBeGreaterThan(0n);
    expect(get(containerMetrics, 'container_fs_usage_bytes')?.value?.value).toBeGreaterThanOrEqual(16_000_000n);
    expect(get(containerMetrics, 'container_processes')?.value?.value).toBeGreaterThanOrEqual(1n);
    expect(get(containerMetrics, 'container_start_time_seconds')?.value?.value).toBeGreaterThan(1_600_000_000n);

    // The pod's own cgroup holds the container: at least as much CPU.
    const podCpu = get(mine!.metrics, 'container_cpu_usage_seconds_total');
    expect(labelsOf(byName.get('container_cpu_usage_seconds_total')!, podCpu!)).toMatchObject({ container: '', id: c.podId, namespace: 'berth-e2e', pod: 'metrics-pod' });
    expect(podCpu!.value!.value).toBeGreaterThanOrEqual(cpu!.value!.value);

    // Network counters are the pod's, per interface: the ping went in and its replies out.
    const rx = mine!.metrics.filter((m) => m.name === 'container_network_receive_bytes_total');
    expect(rx.map((m) => labelsOf(byName.get(m.name)!, m).interface)).toEqual(['eth0']);
    expect(labelsOf(byName.get(rx[0]!.name)!, rx[0]!)).toMatchObject({ pod: 'metrics-pod', namespace: 'berth-e2e', container: '' });
    expect(rx[0]!.value!.value).toBeGreaterThanOrEqual(3000n);
    const tx = mine!.metrics.find((m) => m.name === 'container_network_transmit_bytes_total' && m.labelValues.at(-1) === 'eth0');
    expect(tx?.value?.value).toBeGreaterThanOrEqual(3000n);
    expect(mine!.metrics.find((m) => m.name === 'container_network_receive_packets_total')?.value?.value).toBeGreaterThanOrEqual(3n);
  });

  it('serves berth-cri\'s own counters on /metrics, rising with each RPC', async () => {
    const series = 'berth_cri_grpc_requests_total{method="ListPodSandbox",code="OK"}';
    const before = sampleValue(await scrape(), series);
    await world.runtime.listPodSandbox({});
    await world.runtime.listPodSandbox({});
    const text = await scrape();
    expect(sampleValue(text, series)).toBe(before + 2);
    expect(sampleValue(text, 'berth_cri_grpc_request_duration_seconds_count{method="ListPodSandbox"}')).toBe(before + 2);
    // The image pulled at the start and the pod of the first test went through here too.
    expect(sampleValue(text, 'berth_cri_image_pulls_total{result="success"}')).toBeGreaterThanOrEqual(1);
    expect(sampleValue(text, 'berth_cri_image_pull_bytes_total')).toBeGreaterThan(0);
    expect(sampleValue(text, 'berth_cri_grpc_requests_total{method="RunPodSandbox",code="OK"}')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^berth_cri_cni_duration_seconds_count\{plugin="[^"]+",verb="ADD"\} [1-9]/m);
    // A refused call is counted under its code.
    await expect(world.runtime.podSandboxStatus({ podSandboxId: 'no-such-pod', verbose: false })).rejects.toThrow();
    expect(sampleValue(await scrape(), 'berth_cri_grpc_requests_total{method="PodSandboxStatus",code="NotFound"}')).toBeGreaterThanOrEqual(1);
    const health = await fetch(`http://127.0.0.1:${metricsPort()}/healthz`);
    expect(health.status).toBe(200);
  });
});
