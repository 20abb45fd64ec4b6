import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { ContainerConfig, PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, podSandboxConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot } from '../../world/netns.js';

// RunPodSandbox's runtime handler: an unknown one is refused, and crun runs a pod with its own
// binary and state root.

let world: CriWorld;
let n = 0;

function pod(): PodSandboxConfig {
  n += 1;
  return podSandboxConfig(world, `x${n}`);
}

function container(command: string[], extra: Partial<ContainerConfig> = {}): ContainerConfig {
  return containerConfig('main', world.image('busybox'), { command, ...extra });
}

const start = (config: ContainerConfig, runtimeHandler = ''): Promise<{ id: string; podId: string }> => startContainer(world, config, pod(), runtimeHandler);

describe.skipIf(!isRoot)('berth-cri runtime handlers', () => {
  useCriWorld(['busybox'], (w) => (world = w));

  it('rejects an unknown runtime handler, naming the field', async () => {
    await expect(world.runtime.runPodSandbox({ config: pod(), runtimeHandler: 'kata' })).rejects.toMatchObject({ code: grpcStatus.INVALID_ARGUMENT, details: expect.stringContaining('runtime_handler') });
  });

  it('runs a pod with the crun runtime handler', async (ctx) => {
    let c: { id: string; podId: string };
    try {
      c = await start(container(['sh', '-c', 'echo hello from crun; sleep 3600']), 'crun');
    } catch (err) {
      // crun 1.8 refuses hosts with both cgroup v1 controllers and a cgroup2 mount.
      if (/hybrid mode not supported/.test((err as Error).message)) {
        console.log('skipping the crun test: crun does not support this host\'s hybrid cgroup layout');
        ctx.skip();
      }
      throw err;
    }
    const { status } = await world.runtime.podSandboxStatus({ podSandboxId: c.podId, verbose: false });
    expect(status?.runtimeHandler).toBe('crun');
    const r = await world.runtime.execSync({ containerId: c.id, cmd: ['echo', 'ok'], timeout: 5n });
    expect(r.stdout.toString()).toBe('ok\n');
    // The shim runs the handler's binary with the handler's root: crun keeps a `status` file
    // there, runc a `state.json`.
    const stateDir = join(world.dir, 'crun', c.id);
    expect(readdirSync(stateDir)).toContain('status');
    expect(readdirSync(stateDir)).not.toContain('state.json');
  });
});
