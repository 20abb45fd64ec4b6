// berth-gpu as a component: the kubelet device plugin (deviceplugin v1beta1) for NVIDIA GPUs.
// Started means serving the DevicePlugin socket; registering with kubelet goes on behind it
// (kubelet may start after the runtime), and readiness says whether it is done.
import type { Server } from 'node:http';
import type { Component, ComponentContext } from '../lib/component.js';
import { errorMessage } from '../lib/errors.js';
import { berthVersion } from '../lib/version.js';
import type { GpuConfig } from './config.js';
import { gpuMetrics, serveMetrics } from './metrics.js';
import { PluginRunner } from './runner.js';

export function gpuComponent(config: GpuConfig, { log }: ComponentContext): Component<GpuConfig> {
  const runner = new PluginRunner(config, log);
  let metrics: Server | undefined;

  async function start(): Promise<void> {
    await runner.start();
    if (config.metricsAddr) {
      metrics = await serveMetrics(config.metricsAddr, runner);
      const bound = metrics.address();
      log.info({ address: config.metricsAddr, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /metrics and /healthz');
    }
    log.info({ version: berthVersion, resource: config.resourceName, kubeletDir: config.kubeletDir }, 'berth-gpu running');
  }

  async function stop(): Promise<void> {
    metrics?.close();
    metrics = undefined;
    await runner.stop();
  }

  /** A new configuration rebuilds the plugin and registers again; if that fails, the previous one comes back. */
  async function reload(next: GpuConfig): Promise<void> {
    log.info('reloading the configuration and registering again');
    const previous = runner.config;
    try {
      await runner.reload(next);
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'reload failed; restarting with the previous configuration');
      // Failing again is the host's to handle: a daemon exits 1, berthd restarts the component.
      await runner.reload(previous);
    }
  }

  return {
    start,
    stop,
    reload,
    metrics: () => gpuMetrics(runner),
    notReady: () => (runner.registered ? undefined : 'not registered with kubelet yet'),
  };
}
