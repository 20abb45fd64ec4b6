import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { BerthError } from '../../lib/errors.js';
import { unary, type UnaryLogger } from '../../lib/grpc/unix-socket.js';
import type { CriRuntime } from '../runtime.js';
import { attach } from './container-attach.js';
import { createContainer } from './container-create.js';
import { containerEvents } from './container-events.js';
import { execSync } from './container-exec-sync.js';
import { exec } from './container-exec.js';
import { listContainers } from './container-list.js';
import { reopenContainerLog } from './container-log-reopen.js';
import { removeContainer } from './container-remove.js';
import { startContainer } from './container-start.js';
import { containerStats, listContainerStats } from './container-stats.js';
import { containerStatus } from './container-status.js';
import { stopContainer } from './container-stop.js';
import { updateContainerResources } from './container-update-resources.js';
import { listImages } from './image-list.js';
import { listMetricDescriptors } from './metric-descriptors-list.js';
import { pullImage } from './image-pull.js';
import { removeImage } from './image-remove.js';
import { imageStatus } from './image-status.js';
import { imageFsInfo } from './imagefs-info.js';
import { runtimeConfig } from './runtime-config.js';
import { listPodSandbox } from './sandbox-list.js';
import { listPodSandboxMetrics } from './sandbox-metrics-list.js';
import { portForward } from './sandbox-port-forward.js';
import { removePodSandbox } from './sandbox-remove.js';
import { runPodSandbox } from './sandbox-run.js';
import { listPodSandboxStats, podSandboxStats } from './sandbox-stats.js';
import { podSandboxStatus } from './sandbox-status.js';
import { stopPodSandbox } from './sandbox-stop.js';
import { status } from './status.js';
import { version } from './version.js';

// The gRPC wiring of runtime.v1 RuntimeService and ImageService: each RPC is one line that
// hands the request to its handler file. RPCs that belong to later work answer Unimplemented
// with a message saying so.

function notYet(rpc: string, why: string) {
  return unary(rpc, async () => {
    throw new BerthError('unimplemented', `${rpc} is not implemented by berth-cri: ${why}`);
  });
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
    listMetricDescriptors: unary('ListMetricDescriptors', async () => listMetricDescriptors(), log),
    listPodSandboxMetrics: unary('ListPodSandboxMetrics', () => listPodSandboxMetrics(rt), log),
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
