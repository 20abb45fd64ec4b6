// berth-gpu: a kubelet device plugin (deviceplugin v1beta1) for NVIDIA GPUs.
import type { Server } from 'node:http';
import { errorMessage } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { notifyReady } from '../lib/systemd.js';
import { parseArgs, usage } from './main-args.js';
import { serveMetrics } from './metrics.js';
import { PluginRunner } from './runner.js';
import { berthVersion } from '../lib/version.js';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args === 'help') return void process.stdout.write(usage);
  if (args === 'version') return void process.stdout.write(`berth-gpu ${berthVersion}\n`);
  const log = createLogger({ name: 'berth-gpu', level: args.config.logLevel });
  const runner = new PluginRunner(args.config, log);
  await runner.start();
  let metrics: Server | undefined;
  if (args.config.metricsAddr) {
    metrics = await serveMetrics(args.config.metricsAddr, runner);
    const bound = metrics.address();
    log.info({ address: args.config.metricsAddr, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /metrics and /healthz');
  }
  log.info({ version: berthVersion, resource: args.config.resourceName, kubeletDir: args.config.kubeletDir }, 'berth-gpu running');
  notifyReady();

  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
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
        await runner.reload(previous).catch(() => process.exit(1));
      }
    });
  });
  const stop = (signal: string): void => {
    log.info({ signal }, 'stopping');
    void (async () => {
      await reloading;
      metrics?.close();
      await runner.stop();
      process.exit(0);
    })();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`berth-gpu: ${errorMessage(err)}\n`);
  process.exit(1);
});
