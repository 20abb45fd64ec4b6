import { readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../cri-shim/registry/client.js';
import { ContainerState, type ContainerConfig, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, CriWorld, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { testImages } from '../../world/images.js';
import { isRoot } from '../../world/netns.js';
import { startRegistry, type TestRegistry } from '../../world/registry.js';

// The rest of the container life: log rotation, live resource updates, OOM kills, a second
// runtime handler (crun), and pulls that need credentials.

let world: CriWorld;
let n = 0;

function pod(): PodSandboxConfig {
  n += 1;
  return podSandboxConfig(world, `x${n}`);
}

function container(command: string[], extra: Partial<ContainerConfig> = {}): ContainerConfig {
  return containerConfig('main', world.image('busybox'), { command, ...extra });
}

async function start(config: ContainerConfig, runtimeHandler = ''): Promise<{ id: string; podId: string }> {
  const p = pod();
  const { podSandboxId } = await world.runtime.runPodSandbox({ config: p, runtimeHandler });
  const { containerId } = await world.runtime.createContainer({ podSandboxId, config, sandboxConfig: p });
  await world.runtime.startContainer({ containerId });
  return { id: containerId, podId: podSandboxId };
}

async function exited(id: string): Promise<{ exitCode: number; reason: string }> {
  for (let i = 0; i < 100; i++) {
    const { status } = await world.runtime.containerStatus({ containerId: id, verbose: false });
    if (status?.state === ContainerState.CONTAINER_EXITED) return { exitCode: status.exitCode, reason: status.reason };
    await sleep(100);
  }
  throw new Error(`container ${id} did not exit`);
}

const resources = { cpuPeriod: 0n, cpuQuota: 0n, cpuShares: 0n, memoryLimitInBytes: 0n, oomScoreAdj: 0n, cpusetCpus: '', cpusetMems: '', hugepageLimits: [], unified: {}, memorySwapLimitInBytes: 0n };

describe.skipIf(!isRoot)('berth-cri logs, resources, OOM, runtime handlers, registry auth', () => {
  beforeAll(async () => {
    world = await CriWorld.start();
    await world.images.pullImage({ image: imageSpec(world.image('busybox')), auth: undefined, sandboxConfig: undefined });
  }, 120_000);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(world.criLog().slice(-3000));
    await world.removeAllPods();
  });

  afterAll(async () => {
    await world?.stop();
  });

  it('ReopenContainerLog continues in a new file after kubelet renamed the old one', async () => {
    const c = await start(container(['sh', '-c', 'i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done']));
    const { status } = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
    await sleep(500);
    renameSync(status!.logPath, `${status!.logPath}.1`);
    await world.runtime.reopenContainerLog({ containerId: c.id });
    await sleep(500);
    await world.runtime.stopContainer({ containerId: c.id, timeout: 0n });
    const numbers = (file: string) => readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => Number(l.split(' ').at(-1)));
    const rotated = numbers(`${status!.logPath}.1`);
    const current = numbers(status!.logPath);
    expect(current.length).toBeGreaterThan(0);
    expect([...rotated, ...current]).toEqual([...rotated, ...current].map((_, i) => i + 1));
    await expect(world.runtime.reopenContainerLog({ containerId: c.id })).rejects.toMatchObject({ code: grpcStatus.FAILED_PRECONDITION });
  });

  it('UpdateContainerResources changes the limits of a running container', async () => {
    const c = await start(container(['sleep', '3600']));
    await world.runtime.updateContainerResources({ containerId: c.id, linux: { ...resources, memoryLimitInBytes: 64n * 1024n * 1024n, cpuShares: 512n }, windows: undefined, annotations: {} });
    const r = await world.runtime.execSync({ containerId: c.id, cmd: ['sh', '-c', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'], timeout: 5n });
    expect(r.stdout.toString().trim()).toBe(String(64 * 1024 * 1024));
    const { status } = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
    expect(status?.resources?.linux?.memoryLimitInBytes).toBe(64n * 1024n * 1024n);
  });

  it('reports OOMKilled when the memory limit kills the container', async () => {
    const c = await start(
      container(['sh', '-c', 'x=a; while true; do x="$x$x"; done'], { linux: { resources: { ...resources, memoryLimitInBytes: 16n * 1024n * 1024n }, securityContext: undefined } }),
    );
    const result = await exited(c.id);
    expect(result.reason).toBe('OOMKilled');
    expect(result.exitCode).toBe(137);
  });

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

  describe('a registry that needs credentials', () => {
    let registry: TestRegistry;
    const user = { user: 'berth', password: 's3cret' };

    beforeAll(async () => {
      registry = await startRegistry({ htpasswd: user });
      const client = new RegistryClient({ auth: { username: user.user, password: user.password } });
      const img = testImages().busybox;
      for (const blob of [...img.layers, img.config]) await client.pushBlob(`${registry.host}/private/busybox`, blob.digest, blob.bytes);
      await client.pushManifest(`${registry.host}/private/busybox`, '1', img.manifest.bytes, img.manifest.mediaType);
      client.close();
    }, 60_000);

    afterAll(async () => {
      await registry?.stop();
    });

    it('pulls with the request credentials and refuses without or with wrong ones', async () => {
      const ref = `${registry.host}/private/busybox:1`;
      const none = { username: '', password: '', auth: '', serverAddress: '', identityToken: '', registryToken: '' };
      await expect(world.images.pullImage({ image: imageSpec(ref), auth: undefined, sandboxConfig: undefined })).rejects.toMatchObject({ details: expect.stringMatching(/credentials|unauthorized|401/i) });
      await expect(world.images.pullImage({ image: imageSpec(ref), auth: { ...none, username: 'berth', password: 'wrong' }, sandboxConfig: undefined })).rejects.toBeDefined();
      const auth = { ...none, auth: Buffer.from('berth:s3cret').toString('base64') };
      const { imageRef } = await world.images.pullImage({ image: imageSpec(ref), auth, sandboxConfig: undefined });
      expect(imageRef).toBe(testImages().busybox.config.digest);
    });
  });
});
