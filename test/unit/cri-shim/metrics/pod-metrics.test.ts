import { describe, expect, it } from 'vitest';
import type { CgroupSample } from '../../../../lib/cgroups/sample.js';
import { baseLabelKeys, metricDefs, metricDescriptors } from '../../../../cri-shim/metrics/descriptors.js';
import { containerMetrics, podSandboxMetrics, type ContainerSample, type PodSample } from '../../../../cri-shim/metrics/pod-metrics.js';
import { listMetricDescriptors } from '../../../../cri-shim/server/metric-descriptors-list.js';
import { MetricType, type Metric } from '../../../../proto/gen/runtime/v1/api.js';

// ListPodSandboxMetrics' messages against ListMetricDescriptors, as kubelet's CRI collector
// reads them: a metric without a descriptor, or with a different number of label values, is
// dropped there, and two series with the same name and labels fail the whole scrape.

const s = 1_000_000_000n;

function cgroup(mode: 'v1' | 'v2' = 'v1'): CgroupSample {
  return {
    mode,
    timestampNs: 1_700_000_000n * s,
    cpu: { usageNs: 12n * s + 999_999_999n, userNs: 8n * s, systemNs: 4n * s, periods: 100n, throttledPeriods: 7n, throttledNs: 3n * s },
    memory: {
      usageBytes: 1000n,
      workingSetBytes: 900n,
      rssBytes: 700n,
      cacheBytes: 200n,
      mappedFileBytes: 50n,
      swapBytes: 0n,
      maxUsageBytes: 1200n,
      limitBytes: 4096n,
      failcnt: 1n,
      oomKills: 2n,
      pgfault: { container: 10n, hierarchy: 20n },
      pgmajfault: { container: 1n, hierarchy: 2n },
    },
    threads: { current: 5n, max: 100n },
    procs: [1, 2],
  };
}

function container(id: string, name: string): ContainerSample {
  return {
    containerId: id,
    labels: [name, id, 'registry.local/busybox:1', id, 'ns1', 'pod1'],
    cgroup: cgroup(),
    fsUsageBytes: 8192n,
    fds: { files: 9n, sockets: 2n },
    startedAtNs: 1_699_999_000n * s + 5n,
    spec: { memorySwapLimitBytes: 8192n, cpuPeriod: 100_000n, cpuQuota: 50_000n, cpuShares: 512n },
  };
}

const iface = (name: string) => ({ name, rxBytes: 5000n, rxPackets: 40n, rxErrors: 0n, rxDropped: 1n, txBytes: 6000n, txPackets: 50n, txErrors: 0n, txDropped: 0n });

const podSample: PodSample = {
  podSandboxId: 'sb1',
  labels: ['', 'sb1', '', '', 'ns1', 'pod1'],
  cgroup: cgroup(),
  interfaces: [iface('eth0'), iface('net1')],
  createdAtNs: 1_699_998_000n * s,
  containers: [container('c1', 'app'), container('c2', 'sidecar')],
};

const now = 1_700_000_001n * s;
const allOf = (p: ReturnType<typeof podSandboxMetrics>): Metric[] => [...p.metrics, ...p.containerMetrics.flatMap((c) => c.metrics)];
const find = (ms: Metric[], name: string, ...labels: string[]) => ms.find((m) => m.name === name && labels.every((l) => m.labelValues.includes(l)));

describe('metric descriptors', () => {
  it('describe each name once, with the base label keys first', () => {
    const names = metricDescriptors.map((d) => d.name);
    expect(new Set(names).size).toBe(names.length);
    for (const d of metricDescriptors) {
      expect(d.labelKeys.slice(0, baseLabelKeys.length)).toEqual([...baseLabelKeys]);
      expect(d.name).toMatch(/^container_[a-z_]+$/);
      expect(d.help).not.toBe('');
    }
    expect(listMetricDescriptors().descriptors).toBe(metricDescriptors);
  });

  it('give counters the _total (or cAdvisor\'s own) names and label keys cAdvisor uses', () => {
    const byName = new Map(metricDescriptors.map((d) => [d.name, d.labelKeys]));
    expect(byName.get('container_cpu_usage_seconds_total')).toEqual([...baseLabelKeys, 'cpu']);
    expect(byName.get('container_network_receive_bytes_total')).toEqual([...baseLabelKeys, 'interface']);
    expect(byName.get('container_memory_failures_total')).toEqual([...baseLabelKeys, 'failure_type', 'scope']);
    for (const def of Object.values(metricDefs)) {
      if (def.name.endsWith('_total')) expect(def.type, def.name).toBe(MetricType.COUNTER);
    }
    expect(metricDefs.memoryWorkingSet.type).toBe(MetricType.GAUGE);
  });
});

describe('podSandboxMetrics', () => {
  const out = podSandboxMetrics(podSample, now);
  const all = allOf(out);

  it('has a descriptor for every metric, with as many label values as label keys', () => {
    const keys = new Map(metricDescriptors.map((d) => [d.name, d.labelKeys.length]));
    for (const m of all) {
      expect(keys.has(m.name), m.name).toBe(true);
      expect(m.labelValues.length, m.name).toBe(keys.get(m.name));
      expect(m.metricType, m.name).toBe(Object.values(metricDefs).find((d) => d.name === m.name)!.type);
      expect(m.value?.value, m.name).toBeTypeOf('bigint');
    }
  });

  it('never repeats a series (name and label values), which would fail kubelet\'s scrape', () => {
    const series = all.map((m) => `${m.name}{${m.labelValues.join(',')}}`);
    expect(new Set(series).size).toBe(series.length);
  });

  it('reports the whole set for full samples: every descriptor is used', () => {
    const used = new Set(all.map((m) => m.name));
    expect(metricDescriptors.filter((d) => !used.has(d.name)).map((d) => d.name)).toEqual([]);
  });

  it('puts network counters on the pod, per interface, with pod and namespace labels', () => {
    expect(out.podSandboxId).toBe('sb1');
    const rx = find(out.metrics, 'container_network_receive_bytes_total', 'net1');
    expect(rx?.labelValues).toEqual(['', 'sb1', '', '', 'ns1', 'pod1', 'net1']);
    expect(rx?.value?.value).toBe(5000n);
    expect(find(out.metrics, 'container_network_transmit_packets_total', 'eth0')?.value?.value).toBe(50n);
    expect(out.containerMetrics.flatMap((c) => c.metrics).some((m) => m.name.startsWith('container_network_'))).toBe(false);
  });

  it('labels container series with the container name, ID, image and pod, and counts seconds down to whole ones', () => {
    const c1 = out.containerMetrics.find((c) => c.containerId === 'c1')!.metrics;
    const cpu = find(c1, 'container_cpu_usage_seconds_total');
    expect(cpu?.labelValues).toEqual(['app', 'c1', 'registry.local/busybox:1', 'c1', 'ns1', 'pod1', 'total']);
    expect(cpu?.value?.value).toBe(12n);
    expect(cpu?.metricType).toBe(MetricType.COUNTER);
    expect(cpu?.timestamp).toBe(1_700_000_000n * s);
    expect(find(c1, 'container_memory_working_set_bytes')?.value?.value).toBe(900n);
    expect(find(c1, 'container_memory_failures_total', 'pgmajfault', 'hierarchy')?.value?.value).toBe(2n);
    expect(find(c1, 'container_start_time_seconds')?.value?.value).toBe(1_699_999_000n);
    expect(find(c1, 'container_last_seen')?.value?.value).toBe(1_700_000_001n);
    expect(find(c1, 'container_processes')?.value?.value).toBe(2n);
    expect(find(c1, 'container_sockets')?.value?.value).toBe(2n);
    expect(find(c1, 'container_spec_cpu_quota')?.value?.value).toBe(50_000n);
  });

  it('leaves out what was not read, and limits CRI left unset', () => {
    const bare = containerMetrics(
      { ...container('c3', 'bare'), cgroup: { ...cgroup('v2'), memory: undefined, threads: undefined, cpu: { usageNs: 5n } }, fds: undefined, fsUsageBytes: undefined, spec: { memorySwapLimitBytes: 0n, cpuPeriod: 0n, cpuQuota: -1n, cpuShares: 0n } },
      now,
    ).metrics.map((m) => m.name);
    expect(bare).toEqual(['container_cpu_usage_seconds_total', 'container_processes', 'container_start_time_seconds', 'container_last_seen']);
    // A pod without its own cgroup (no cgroup parent) still has its network and times.
    const podOnly = podSandboxMetrics({ ...podSample, cgroup: undefined, containers: [] }, now);
    expect(podOnly.metrics.some((m) => m.name === 'container_cpu_usage_seconds_total')).toBe(false);
    expect(podOnly.metrics.some((m) => m.name === 'container_network_receive_bytes_total')).toBe(true);
  });
});
