import { Metadata, type ServiceDefinition, type UntypedServiceImplementation, type handleUnaryCall } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { CriOperationMetrics, instrumentService } from '../../../../cri-shim/metrics/operations.js';

// berth-cri's own /metrics: RPCs by method and code with latency, pulls and CNI calls.

const definition = {
  runPodSandbox: { path: '/runtime.v1.RuntimeService/RunPodSandbox', requestStream: false, responseStream: false },
  getContainerEvents: { path: '/runtime.v1.RuntimeService/GetContainerEvents', requestStream: false, responseStream: true },
} as unknown as ServiceDefinition;

function call(handler: unknown): Promise<unknown> {
  return new Promise((resolve) => (handler as handleUnaryCall<unknown, unknown>)({ request: {}, metadata: new Metadata() } as never, (err, value) => resolve(err ?? value)));
}

describe('instrumentService', () => {
  it('counts each unary call by method and gRPC code, and times it', async () => {
    const m = new CriOperationMetrics();
    let fail = false;
    const stream = (): void => undefined;
    const impl: UntypedServiceImplementation = {
      runPodSandbox: ((_call, cb) => (fail ? cb({ code: 5, details: 'no' }) : cb(null, { podSandboxId: 'x' }))) as handleUnaryCall<unknown, unknown>,
      getContainerEvents: stream,
    };
    const wrapped = instrumentService(definition, impl, m);
    expect(wrapped.getContainerEvents).toBe(stream);
    expect(await call(wrapped.runPodSandbox)).toEqual({ podSandboxId: 'x' });
    await call(wrapped.runPodSandbox);
    fail = true;
    expect(await call(wrapped.runPodSandbox)).toMatchObject({ code: 5 });
    const text = m.text();
    expect(text).toContain('berth_cri_grpc_requests_total{method="RunPodSandbox",code="OK"} 2\n');
    expect(text).toContain('berth_cri_grpc_requests_total{method="RunPodSandbox",code="NotFound"} 1\n');
    expect(text).toContain('berth_cri_grpc_request_duration_seconds_count{method="RunPodSandbox"} 3\n');
    expect(text).toContain('# TYPE berth_cri_grpc_request_duration_seconds histogram\n');
    expect(text).not.toContain('GetContainerEvents');
  });
});

describe('CriOperationMetrics', () => {
  it('adds up pulls (bytes of successful ones) and CNI calls by plugin and verb', () => {
    const m = new CriOperationMetrics();
    m.observePull(1.5, 1000);
    m.observePull(0.2, 24);
    m.observePull(3, undefined);
    m.observeCni('berth-bridge', 'ADD', 0.02, true);
    m.observeCni('berth-bridge', 'ADD', 0.03, false);
    m.observeCni('portmap', 'DEL', 0.01, true);
    const text = m.text();
    expect(text).toContain('berth_cri_image_pulls_total{result="success"} 2\n');
    expect(text).toContain('berth_cri_image_pulls_total{result="failure"} 1\n');
    expect(text).toContain('berth_cri_image_pull_bytes_total 1024\n');
    expect(text).toContain('berth_cri_image_pull_duration_seconds_count 3\n');
    expect(text).toContain('berth_cri_cni_duration_seconds_count{plugin="berth-bridge",verb="ADD"} 2\n');
    expect(text).toContain('berth_cri_cni_duration_seconds_bucket{plugin="portmap",verb="DEL",le="0.01"} 1\n');
    expect(text).toContain('berth_cri_cni_failures_total{plugin="berth-bridge",verb="ADD"} 1\n');
  });

  it('describes every family even before anything happened', () => {
    const text = new CriOperationMetrics().text();
    for (const name of ['berth_cri_grpc_requests_total', 'berth_cri_grpc_request_duration_seconds', 'berth_cri_image_pull_bytes_total', 'berth_cri_cni_duration_seconds']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });
});
