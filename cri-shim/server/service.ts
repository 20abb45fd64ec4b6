import type { ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { BerthError } from '../../lib/errors.js';
import { unary, type UnaryLogger } from '../../lib/grpc/unix-socket.js';
import type { ContainerEventResponse, GetEventsRequest } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';
import { createContainer } from './container-create.js';
import { execSync } from './container-exec-sync.js';
import { attach, exec, portForward } from './container-stream.js';
import { removeContainer } from './container-remove.js';
import { startContainer } from './container-start.js';
import { stopContainer } from './container-stop.js';
import { reopenContainerLog, updateContainerResources } from './container-update.js';
import { imageFsInfo, imageStatus, listImages, removeImage } from './image-status.js';
import { pullImage } from './image-pull.js';
import { runtimeConfig, status, version } from './runtime-info.js';
import { runPodSandbox } from './sandbox-run.js';
import { removePodSandbox, stopPodSandbox } from './sandbox-stop.js';
import { containerStats, listContainerStats, listPodSandboxStats, podSandboxStats } from './stats.js';
import { containerStatus, listContainers, listPodSandbox, podSandboxStatus } from './status-list.js';

// The gRPC wiring of runtime.v1 RuntimeService and ImageService: each RPC is one line that
// hands the request to its handler file. RPCs that belong to later work answer Unimplemented
// with a message saying so.

function notYet(rpc: string, why: string) {
  return unary(rpc, async () => {
    throw new BerthError('unimplemented', `${rpc} is not implemented by berth-cri: ${why}`);
  });
}

/** GetContainerEvents: a stream of lifecycle events until the client goes away. */
function containerEvents(rt: CriRuntime) {
  return (call: ServerWritableStream<GetEventsRequest, ContainerEventResponse>) => {
    const unsubscribe = rt.events.subscribe((event) => {
      // A client that stops reading is dropped; kubelet reconnects and relists.
      if (!call.write(event) && call.writableLength > 4 * 1024 * 1024) {
        unsubscribe();
        call.destroy(new Error('event consumer too slow'));
      }
    });
    call.on('cancelled', unsubscribe);
    call.on('close', unsubscribe);
    call.on('error', unsubscribe);
  };
}

export function runtimeService(rt: CriRuntime, log?: UnaryLogger): UntypedServiceImplementation {
  return {
    version: unary('Version', async () => version(), log),
    status: unary('Status', (req) => status(rt, req), log),
    runtimeConfig: unary('RuntimeConfig', async () => runtimeConfig(rt), log),
    updateRuntimeConfig: unary('UpdateRuntimeConfig', async () => ({}), log),
    runPodSandbox: unary('RunPodSandbox', (req) => runPodSandbox(rt, req), log),
    stopPodSandbox: unary('StopPodSandbox', (req) => stopPodSandbox(rt, req), log),
    removePodSandbox: unary('RemovePodSandbox', (req) => removePodSandbox(rt, req), log),
    podSandboxStatus: unary('PodSandboxStatus', async (req) => podSandboxStatus(rt, req), log),
    listPodSandbox: unary('ListPodSandbox', async (req) => listPodSandbox(rt, req), log),
    createContainer: unary('CreateContainer', (req) => createContainer(rt, req), log),
    startContainer: unary('StartContainer', (req) => startContainer(rt, req), log),
    stopContainer: unary('StopContainer', (req) => stopContainer(rt, req), log),
    removeContainer: unary('RemoveContainer', (req) => removeContainer(rt, req), log),
    listContainers: unary('ListContainers', async (req) => listContainers(rt, req), log),
    containerStatus: unary('ContainerStatus', async (req) => containerStatus(rt, req), log),
    updateContainerResources: unary('UpdateContainerResources', (req) => updateContainerResources(rt, req), log),
    reopenContainerLog: unary('ReopenContainerLog', (req) => reopenContainerLog(rt, req), log),
    execSync: unary('ExecSync', (req) => execSync(rt, req), log),
    exec: unary('Exec', async (req) => exec(rt, req), log),
    attach: unary('Attach', async (req) => attach(rt, req), log),
    portForward: unary('PortForward', async (req) => portForward(rt, req), log),
    containerStats: unary('ContainerStats', (req) => containerStats(rt, req), log),
    listContainerStats: unary('ListContainerStats', (req) => listContainerStats(rt, req), log),
    podSandboxStats: unary('PodSandboxStats', (req) => podSandboxStats(rt, req), log),
    listPodSandboxStats: unary('ListPodSandboxStats', (req) => listPodSandboxStats(rt, req), log),
    getContainerEvents: containerEvents(rt),
    checkpointContainer: notYet('CheckpointContainer', 'checkpoint/restore is not supported'),
    checkpointPod: notYet('CheckpointPod', 'checkpoint/restore is not supported'),
    restorePod: notYet('RestorePod', 'checkpoint/restore is not supported'),
    listMetricDescriptors: unary('ListMetricDescriptors', async () => ({ descriptors: [] }), log),
    listPodSandboxMetrics: unary('ListPodSandboxMetrics', async () => ({ podMetrics: [] }), log),
    updatePodSandboxResources: notYet('UpdatePodSandboxResources', 'pod-level resize is not supported'),
    streamPodSandboxes: notYet('StreamPodSandboxes', 'use ListPodSandbox'),
    streamContainers: notYet('StreamContainers', 'use ListContainers'),
    streamContainerStats: notYet('StreamContainerStats', 'use ListContainerStats'),
    streamPodSandboxStats: notYet('StreamPodSandboxStats', 'use ListPodSandboxStats'),
    streamPodSandboxMetrics: notYet('StreamPodSandboxMetrics', 'use ListPodSandboxMetrics'),
  };
}

export function imageService(rt: CriRuntime, log?: UnaryLogger): UntypedServiceImplementation {
  return {
    listImages: unary('ListImages', async (req) => listImages(rt, req), log),
    imageStatus: unary('ImageStatus', async (req) => imageStatus(rt, req), log),
    pullImage: unary('PullImage', (req) => pullImage(rt, req), log),
    removeImage: unary('RemoveImage', (req) => removeImage(rt, req), log),
    imageFsInfo: unary('ImageFsInfo', () => imageFsInfo(rt), log),
    streamImages: notYet('StreamImages', 'use ListImages'),
  };
}
