import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ContainerConfig, LinuxContainerResources, PodSandboxConfig, RunPodSandboxRequest, VersionResponse } from '../../../proto/gen/runtime/v1/api.js';
import { repoRoot } from '../../../world/cni.js';

// kubelet is compiled against k8s.io/cri-api: a renumbered field would decode as garbage. These
// check field numbers on the wire (tag byte = number << 3 | wire type) for fields kubelet
// always sends, and that the checked-in TypeScript is what proto/ generates.

const tag = (field: number, wireType: number) => (field << 3) | wireType;
const bytes = (b: Uint8Array) => [...b];

describe('CRI runtime.v1 on the wire', () => {
  it('VersionResponse fields 1-4 are version, runtime_name, runtime_version, runtime_api_version', () => {
    const b = VersionResponse.encode({ version: 'a', runtimeName: 'b', runtimeVersion: 'c', runtimeApiVersion: 'd' }).finish();
    expect(bytes(b)).toEqual([tag(1, 2), 1, 97, tag(2, 2), 1, 98, tag(3, 2), 1, 99, tag(4, 2), 1, 100]);
  });

  it('RunPodSandboxRequest carries config as 1 and runtime_handler as 2', () => {
    const b = RunPodSandboxRequest.encode({ config: PodSandboxConfig.fromPartial({ hostname: 'h' }), runtimeHandler: 'runc' }).finish();
    // config { hostname (field 2) = "h" }, runtime_handler = "runc"
    expect(bytes(b)).toEqual([tag(1, 2), 3, tag(2, 2), 1, 104, tag(2, 2), 4, ...Buffer.from('runc')]);
  });

  it('ContainerConfig log_path is field 11 and tty field 14; memory_limit_in_bytes is an int64 field 4', () => {
    expect(bytes(ContainerConfig.encode(ContainerConfig.fromPartial({ logPath: 'x' })).finish())).toEqual([tag(11, 2), 1, 120]);
    expect(bytes(ContainerConfig.encode(ContainerConfig.fromPartial({ tty: true })).finish())).toEqual([tag(14, 0), 1]);
    const big = 2n ** 40n;
    const r = LinuxContainerResources.decode(LinuxContainerResources.encode(LinuxContainerResources.fromPartial({ memoryLimitInBytes: big })).finish());
    expect(r.memoryLimitInBytes).toBe(big);
  });

  it('proto/gen is what scripts/gen-proto.sh generates from proto/', (ctx) => {
    if (spawnSync('protoc', ['--version']).status !== 0) {
      console.log('skipped: protoc is not installed (apt-get install protobuf-compiler)');
      ctx.skip();
    }
    const out = mkdtempSync(join(tmpdir(), 'berth-gen-'));
    try {
      execFileSync('bash', [join(repoRoot, 'scripts/gen-proto.sh'), out], { cwd: repoRoot, stdio: 'pipe' });
      const file = 'runtime/v1/api.ts';
      expect(readFileSync(join(out, file), 'utf8')).toBe(readFileSync(join(repoRoot, 'proto/gen', file), 'utf8'));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
