import { afterAll, afterEach, beforeAll } from 'vitest';
import type { ContainerConfig, PodSandboxConfig } from '../proto/gen/runtime/v1/api.js';
import { CriWorld, imageSpec, podSandboxConfig, type CriWorldOptions } from './cri.js';

// The life of a CriWorld around one describe block (kept apart from cri.ts, which the demo and
// the benchmarks bundle and which must not import vitest): started, with `images` pulled,
// before the tests; every pod removed after each test, with berth-cri's log printed when the
// test failed; stopped at the end.

export function useCriWorld(images: readonly string[], set: (world: CriWorld) => void, options: CriWorldOptions = {}): void {
  let world: CriWorld | undefined;
  beforeAll(async () => {
    world = await CriWorld.start(options);
    set(world);
    for (const image of images) await world.images.pullImage({ image: imageSpec(world.image(image)), auth: undefined, sandboxConfig: undefined });
  }, 120_000);

  afterEach(async (ctx) => {
    if (!world) return;
    if (ctx.task.result?.state === 'fail') console.log(world.criLog().slice(-3000));
    await world.removeAllPods();
  });

  afterAll(async () => {
    await world?.stop();
  });
}

let podSeq = 0;

/** Run a pod (a fresh one unless given) with this container started in it, under the runtime handler given (the default one unless given). */
export async function startContainer(
  world: CriWorld,
  config: ContainerConfig,
  pod: PodSandboxConfig = podSandboxConfig(world, `pod${++podSeq}`),
  runtimeHandler = '',
): Promise<{ id: string; podId: string }> {
  const { podSandboxId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler });
  const { containerId } = await world.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
  await world.runtime.startContainer({ containerId });
  return { id: containerId, podId: podSandboxId };
}
