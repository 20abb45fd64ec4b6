import { type MetricDescriptor, MetricType } from '../../proto/gen/runtime/v1/api.js';

// The metrics ListPodSandboxMetrics reports, described once for ListMetricDescriptors. kubelet
// (PodAndContainerStatsFromCRI) turns each descriptor into a Prometheus description for its
// /metrics/cadvisor and drops any metric whose name has none, so names, help texts and label
// keys are cAdvisor's, and every metric of one name carries the same label keys in this order.

/**
 * The labels kubelet's /metrics/cadvisor puts on every series: the CRI container name, the
 * runtime's ID, the image, the runtime's name for it, and the pod. Pod-level series (the pod
 * cgroup, the pod network) have container="" and name="", as cAdvisor's pod cgroups do.
 */
export const baseLabelKeys = ['container', 'id', 'image', 'name', 'namespace', 'pod'] as const;

export interface MetricDef {
  name: string;
  help: string;
  type: MetricType;
  /** Label keys after the base ones; a metric's label values follow the same order. */
  extraLabelKeys: readonly string[];
}

const { COUNTER, GAUGE } = MetricType;
const def = (name: string, help: string, type: MetricType, extraLabelKeys: readonly string[] = []): MetricDef => ({ name, help, type, extraLabelKeys });
const net = ['interface'] as const;

export const metricDefs = {
  cpuUsage: def('container_cpu_usage_seconds_total', 'Cumulative cpu time consumed in seconds.', COUNTER, ['cpu']),
  cpuUser: def('container_cpu_user_seconds_total', 'Cumulative user cpu time consumed in seconds.', COUNTER),
  cpuSystem: def('container_cpu_system_seconds_total', 'Cumulative system cpu time consumed in seconds.', COUNTER),
  cfsPeriods: def('container_cpu_cfs_periods_total', 'Number of elapsed enforcement period intervals.', COUNTER),
  cfsThrottledPeriods: def('container_cpu_cfs_throttled_periods_total', 'Number of throttled period intervals.', COUNTER),
  cfsThrottledSeconds: def('container_cpu_cfs_throttled_seconds_total', 'Total time duration the container has been throttled.', COUNTER),

  memoryUsage: def('container_memory_usage_bytes', 'Current memory usage in bytes, including all memory regardless of when it was accessed', GAUGE),
  memoryMaxUsage: def('container_memory_max_usage_bytes', 'Maximum memory usage recorded in bytes', GAUGE),
  memoryWorkingSet: def('container_memory_working_set_bytes', 'Current working set in bytes.', GAUGE),
  memoryRss: def('container_memory_rss', 'Size of RSS in bytes.', GAUGE),
  memoryCache: def('container_memory_cache', 'Number of bytes of page cache memory.', GAUGE),
  memorySwap: def('container_memory_swap', 'Container swap usage in bytes.', GAUGE),
  memoryMappedFile: def('container_memory_mapped_file', 'Size of memory mapped files in bytes.', GAUGE),
  memoryFailcnt: def('container_memory_failcnt', 'Number of memory usage hits limits', COUNTER),
  memoryFailures: def('container_memory_failures_total', 'Cumulative count of memory allocation failures.', COUNTER, ['failure_type', 'scope']),
  oomEvents: def('container_oom_events_total', 'Count of out of memory events observed for the container', COUNTER),

  rxBytes: def('container_network_receive_bytes_total', 'Cumulative count of bytes received', COUNTER, net),
  rxPackets: def('container_network_receive_packets_total', 'Cumulative count of packets received', COUNTER, net),
  rxErrors: def('container_network_receive_errors_total', 'Cumulative count of errors encountered while receiving', COUNTER, net),
  rxDropped: def('container_network_receive_packets_dropped_total', 'Cumulative count of packets dropped while receiving', COUNTER, net),
  txBytes: def('container_network_transmit_bytes_total', 'Cumulative count of bytes transmitted', COUNTER, net),
  txPackets: def('container_network_transmit_packets_total', 'Cumulative count of packets transmitted', COUNTER, net),
  txErrors: def('container_network_transmit_errors_total', 'Cumulative count of errors encountered while transmitting', COUNTER, net),
  txDropped: def('container_network_transmit_packets_dropped_total', 'Cumulative count of packets dropped while transmitting', COUNTER, net),

  fsUsage: def('container_fs_usage_bytes', 'Number of bytes that are consumed by the container on this filesystem.', GAUGE),

  processes: def('container_processes', 'Number of processes running inside the container.', GAUGE),
  threads: def('container_threads', 'Number of threads running inside the container', GAUGE),
  threadsMax: def('container_threads_max', 'Maximum number of threads allowed inside the container, infinity if value is zero', GAUGE),
  fileDescriptors: def('container_file_descriptors', 'Number of open file descriptors for the container.', GAUGE),
  sockets: def('container_sockets', 'Number of open sockets for the container.', GAUGE),

  startTime: def('container_start_time_seconds', 'Start time of the container since unix epoch in seconds.', GAUGE),
  lastSeen: def('container_last_seen', 'Last time a container was seen by the exporter', GAUGE),

  specMemoryLimit: def('container_spec_memory_limit_bytes', 'Memory limit for the container.', GAUGE),
  specMemorySwapLimit: def('container_spec_memory_swap_limit_bytes', 'Memory swap limit for the container.', GAUGE),
  specCpuPeriod: def('container_spec_cpu_period', 'CPU period of the container.', GAUGE),
  specCpuQuota: def('container_spec_cpu_quota', 'CPU quota of the container.', GAUGE),
  specCpuShares: def('container_spec_cpu_shares', 'CPU share of the container.', GAUGE),
} as const satisfies Record<string, MetricDef>;

/** ListMetricDescriptors' answer: built once, the same for the life of the process. */
export const metricDescriptors: readonly MetricDescriptor[] = Object.values(metricDefs).map((d) => ({
  name: d.name,
  help: d.help,
  labelKeys: [...baseLabelKeys, ...d.extraLabelKeys],
}));
