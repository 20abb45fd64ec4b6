import type { ServiceDefinition, UntypedServiceImplementation, handleUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import { counter, histogram, Histogram, metricsText, type MetricFamily, type Sample } from '../../lib/metrics.js';

// berth-cri's own numbers for its /metrics (standalone --metrics-addr, or berthd's one
// endpoint): every CRI RPC by method and gRPC code with its latency, image pulls (count, bytes,
// duration) and CNI plugin calls (duration and failures by plugin type and verb). The hot path is
// the RPC: its slot (one array of counts per code, one histogram) is made when the service is
// wired, so a call costs two clock reads, an array increment and a histogram observation (under 1 µs
// measured here, against ~150 µs for the gRPC call itself).

/** gRPC's canonical code names, as grpc-go's Prometheus interceptors label them. */
const codeNames = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
] as const;

/** Seconds: sub-millisecond list/status calls up to minute-long pulls and stops. */
const rpcBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const pullBuckets = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const cniBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

class RpcSlot {
  readonly codes = new Array<number>(codeNames.length).fill(0);
  readonly latency = new Histogram(rpcBuckets);
  constructor(readonly method: string) {}

  /** `startedMs`: performance.now() when the call came in (a plain number: no bigint per call). */
  done(code: number, startedMs: number): void {
    this.codes[code >= 0 && code < codeNames.length ? code : 2]!++;
    this.latency.observe((performance.now() - startedMs) / 1000);
  }
}

interface CniSlot {
  plugin: string;
  verb: string;
  failures: number;
  duration: Histogram;
}

export class CriOperationMetrics {
  private readonly rpcs: RpcSlot[] = [];
  private readonly cni = new Map<string, CniSlot>();
  readonly pulls = { succeeded: 0, failed: 0, bytes: 0, duration: new Histogram(pullBuckets) };

  /** The counters of one RPC method; made once per method when the service is wired. */
  rpcSlot(method: string): RpcSlot {
    let slot = this.rpcs.find((s) => s.method === method);
    if (!slot) this.rpcs.push((slot = new RpcSlot(method)));
    return slot;
  }

  /** One CNI plugin execution (lib/cni/runner.ts's observer). */
  observeCni(plugin: string, verb: string, seconds: number, ok: boolean): void {
    const key = `${plugin} ${verb}`;
    let slot = this.cni.get(key);
    if (!slot) this.cni.set(key, (slot = { plugin, verb, failures: 0, duration: new Histogram(cniBuckets) }));
    slot.duration.observe(seconds);
    if (!ok) slot.failures++;
  }

  /** One finished image pull: its duration, and the bytes it fetched when it succeeded. */
  observePull(seconds: number, bytes: number | undefined): void {
    this.pulls.duration.observe(seconds);
    if (bytes === undefined) this.pulls.failed++;
    else {
      this.pulls.succeeded++;
      this.pulls.bytes += bytes;
    }
  }

  families(): MetricFamily[] {
    const calls: Sample[] = [];
    for (const slot of this.rpcs) {
      slot.codes.forEach((n, code) => {
        if (n > 0) calls.push({ labels: { method: slot.method, code: codeNames[code]! }, value: n });
      });
    }
    const cni = [...this.cni.values()];
    return [
      counter('berth_cri_grpc_requests_total', 'CRI RPCs answered, by method and gRPC status code.', calls),
      histogram('berth_cri_grpc_request_duration_seconds', 'Time to answer a CRI RPC, by method.', this.rpcs.filter((s) => s.latency.count > 0).map((s) => ({ labels: { method: s.method }, histogram: s.latency }))),
      counter('berth_cri_image_pulls_total', 'Image pulls finished, by result.', [
        { labels: { result: 'success' }, value: this.pulls.succeeded },
        { labels: { result: 'failure' }, value: this.pulls.failed },
      ]),
      counter('berth_cri_image_pull_bytes_total', 'Bytes of manifests, configs and layers fetched from registries by successful pulls.', this.pulls.bytes),
      histogram('berth_cri_image_pull_duration_seconds', 'Time an image pull took, from resolving the reference to the image being named.', this.pulls.duration),
      histogram('berth_cri_cni_duration_seconds', 'Time a CNI plugin execution took, by plugin type and verb (ADD, DEL, CHECK, GC, STATUS).', cni.map((s) => ({ labels: { plugin: s.plugin, verb: s.verb }, histogram: s.duration }))),
      counter('berth_cri_cni_failures_total', 'CNI plugin executions that returned an error, by plugin type and verb.', cni.map((s) => ({ labels: { plugin: s.plugin, verb: s.verb }, value: s.failures }))),
    ];
  }

  text(): string {
    return metricsText(this.families());
  }
}

/**
 * The service with each unary handler counted and timed under its method name (the last part
 * of its path, e.g. RunPodSandbox). Streaming handlers are passed through as they are.
 */
export function instrumentService(definition: ServiceDefinition, implementation: UntypedServiceImplementation, metrics: CriOperationMetrics): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [key, handler] of Object.entries(implementation)) {
    const method = definition[key];
    if (!method || method.requestStream || method.responseStream) {
      out[key] = handler;
      continue;
    }
    const slot = metrics.rpcSlot(method.path.slice(method.path.lastIndexOf('/') + 1));
    const unaryHandler = handler as handleUnaryCall<unknown, unknown>;
    const wrapped: handleUnaryCall<unknown, unknown> = (call, callback) => {
      const started = performance.now();
      const done: sendUnaryData<unknown> = (err, value, trailer, flags) => {
        slot.done(err ? (err.code ?? 2) : 0, started);
        callback(err, value, trailer, flags);
      };
      unaryHandler(call, done);
    };
    out[key] = wrapped;
  }
  return out;
}
