// berthd: berth's node agent, any set of its components (cri, csi, gpu, overlay, cnid) in one
// process, each serving its usual sockets; one logger, one gRPC stack, one /metrics, one
// sd_notify READY and the systemd watchdog. See config.ts for the settings.
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import { componentNames, type ComponentName } from '../lib/component.js';
import { runDaemon } from '../lib/daemon.js';
import { errorMessage } from '../lib/errors.js';
import { loadComponent } from './components.js';
import { parseArgs, usage, type BerthdConfig } from './config.js';
import { ComponentHost } from './host.js';
import { serveHttp } from './http.js';

/** STATUS= for systemctl status: each component's state in a few words. */
function summary(host: ComponentHost): string {
  return host
    .statuses()
    .map((s) => `${s.name} ${s.state === 'running' && s.notReady ? 'running (not ready)' : s.state}`)
    .join(', ');
}

/**
 * For the containment tests, as csi-driver/faults.ts for the crash tests: with
 * BERTH_CRASH_IN=<component>, a callback of that component throws 200 ms after it first
 * started, where no code catches it. Unset, nothing happens.
 */
function injectCrash(host: ComponentHost): void {
  const name = process.env.BERTH_CRASH_IN as ComponentName | undefined;
  if (!name || !(componentNames as readonly string[]).includes(name) || !host.has(name)) return;
  host.context.run(name, () => setTimeout(() => {
    throw new Error(`crash injected into ${name} (BERTH_CRASH_IN)`);
  }, 200));
}

runDaemon({
  name: 'berthd',
  usage,
  parseArgs: (argv) => parseArgs(argv, process.env, existsSync),
  async serve(args, daemon) {
    let config: BerthdConfig = args.config;
    const log = daemon.logger(config.logLevel);
    const host = new ComponentHost({
      log,
      load: loadComponent,
      logLevel: (_name, c) => (c as { logLevel?: string }).logLevel ?? config.logLevel,
      restartBackoffMaxMs: config.restartBackoffMaxMs,
      onChange: () => host.settled && daemon.status(summary(host)),
    });
    // An exception no code caught: if it happened in one component's callback, only that
    // component is restarted; otherwise the process cannot be trusted and systemd restarts it.
    process.on('uncaughtException', (err) => {
      const name = host.context.getStore();
      if (name && host.has(name)) return host.crashed(name, err);
      log.fatal({ err: errorMessage(err), stack: err.stack }, 'uncaught exception outside any component; exiting');
      process.exit(1);
    });
    let http: Server | undefined;
    daemon.onStop(async () => {
      http?.close();
      await host.stopAll();
    });
    if (config.http) {
      http = await serveHttp(config.http, host);
      const bound = http.address();
      log.info({ address: config.http, port: typeof bound === 'object' && bound ? bound.port : undefined }, 'serving /metrics, /healthz and /readyz');
    }
    log.info({ components: Object.keys(config.components), source: config.source }, 'starting');
    await host.startAll(config.components);
    daemon.ready(summary(host));
    log.info({ status: summary(host) }, 'berthd running');
    injectCrash(host);

    daemon.onReload(async () => {
      let next: BerthdConfig;
      try {
        next = args.load();
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'SIGHUP: the configuration is not valid; keeping the running one');
        return;
      }
      if (next.http !== config.http) log.warn({ http: next.http }, 'SIGHUP: a new http address takes a restart of berthd');
      config = next;
      log.info({ components: Object.keys(next.components) }, 'SIGHUP: applying the configuration');
      await host.apply(next.components);
      daemon.status(summary(host));
    });
  },
});
