// berth-gpu: a kubelet device plugin (deviceplugin v1beta1) for NVIDIA GPUs.
import type { Server } from 'node:http';
import { runDaemon, type Daemon } from '../lib/daemon.js';
import { errorMessage } from '../lib/errors.js';
import { parseArgs, usage, type ParsedArgs } from './main-args.js';
import { serveMetrics } from './metrics.js';
import { PluginRunner } from './runner.js';
import { berthVersion } from '../lib/version.js';

async function serve(args: ParsedArgs, daemon: Daemon): Promise<void> {
  const log = daemon.logger(args.config.logLevel);
  const runner = new PluginRunner(args.config, log);
  await runner.start();
  let metrics: Server | undefined;
  if (args.config.metricsAddr) {
    metrics = await serveMetrics(args.config.metricsAddr, runner);
    const bound = metrics.address();
    log.info({ address: args.config.metricsAddr, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /metrics and /healthz');
  }
  log.info({ version: berthVersion, resource: args.config.resourceName, kubeletDir: args.config.kubeletDir }, 'berth-gpu running');

  daemon.onReload(async () => {
    let next;
    try {
      next = args.reload();
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'SIGHUP: the new configuration is not valid; keeping the running one');
      return;
    }
    log.info('SIGHUP: reloading the configuration and registering again');
    const previous = runner.config;
    try {
      await runner.reload(next);
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'SIGHUP: reload failed; restarting with the previous configuration');
      // Failing again is fatal: the daemon exits 1 and its service manager restarts it.
      await runner.reload(previous);
    }
  });
  daemon.onStop(async () => {
    metrics?.close();
    await runner.stop();
  });
  daemon.ready();
}

runDaemon({ name: 'berth-gpu', usage, parseArgs, serve });
