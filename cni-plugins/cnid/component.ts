// berth-cnid as a component: berth's CNI plugins loaded once and served on a unix socket, so a
// plugin call costs a round trip instead of a Node start (the executables in dist/cni are a C
// shim that forwards here, and runs the plugin itself when no daemon of its build answers).
import { registerLocalPlugins, unregisterLocalPlugins, type LocalPluginHost } from '../../lib/cni/in-process.js';
import { executePlugin } from '../../lib/cni/skeleton.js';
import type { Component, ComponentContext } from '../../lib/component.js';
import { loadNetlink } from '../../lib/netlink/socket.js';
import { counter, metricsText } from '../../lib/metrics.js';
import { withNetns } from '../../lib/netns.js';
import { bandwidthPlugin } from '../bandwidth/plugin.js';
import { bridgePlugin } from '../bridge/plugin.js';
import { hostLocalPlugin } from '../host-local/plugin.js';
import { loopbackPlugin } from '../loopback/plugin.js';
import { overlayPlugin } from '../overlay/plugin.js';
import { portmapPlugin } from '../portmap/plugin.js';
import { tuningPlugin } from '../tuning/plugin.js';
import { CniDaemon, type AnyPlugin } from './server.js';

/** esbuild defines this in the dist bundle (scripts/build.mjs); the shim carries the same id. */
declare const BERTH_BUILD_ID: string | undefined;
export const buildId = typeof BERTH_BUILD_ID !== 'undefined' ? BERTH_BUILD_ID : 'source';

export const defaultSocket = '/run/berth/cni.sock';

export const plugins: AnyPlugin[] = [bridgePlugin, loopbackPlugin, hostLocalPlugin, portmapPlugin, overlayPlugin, bandwidthPlugin, tuningPlugin];

export interface CnidConfig {
  socket: string;
  /** The component's own log level (berthd's cnid section); the process's when absent. */
  logLevel?: string;
}

/** sd_listen_fds(3): the first inherited socket, if systemd passed sockets to this process. */
function inheritedSocket(): number | undefined {
  const { LISTEN_PID, LISTEN_FDS } = process.env;
  if (LISTEN_PID !== String(process.pid) || !LISTEN_FDS || Number(LISTEN_FDS) < 1) return undefined;
  // Like sd_listen_fds(1): the plugins' child processes must not believe they were activated.
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_FDNAMES;
  return 3;
}

/** Load what the plugins load lazily, so the first request does not pay for it. */
async function warmUp(): Promise<void> {
  await loadNetlink();
  withNetns('/proc/self/ns/net', () => undefined);
  for (const plugin of plugins) await executePlugin(plugin, { env: { CNI_COMMAND: 'VERSION' }, stdin: '{}' });
}

export function cnidComponent(config: CnidConfig, { log }: ComponentContext): Component<CnidConfig> {
  let cnid: CniDaemon | undefined;
  let local: LocalPluginHost | undefined;

  async function start(): Promise<void> {
    // The daemon's own level is not the plugins': inside the daemon they log at their default
    // level, and a caller asking for another one is run standalone (see server.ts).
    delete process.env.BERTH_LOG_LEVEL;
    cnid = new CniDaemon({ plugins, buildId, log });
    await warmUp();
    const fd = inheritedSocket();
    if (fd !== undefined) await cnid.listenOnFd(fd);
    else await cnid.listenOnPath(config.socket);
    log.info({ socket: fd === undefined ? config.socket : `fd ${fd} (socket activation)`, buildId, plugins: cnid.pluginNames }, 'listening');
    // A CRI in this process (berthd) calls the plugins here directly, skipping shim and socket.
    const daemon = cnid;
    local = { buildId, serve: (plugin, env, stdin) => daemon.serveLocal(plugin, env, stdin) };
    registerLocalPlugins(local);
  }

  /** The calls under way always finish: a plugin must not stop in the middle of its netlink or iptables work. */
  async function stop(): Promise<void> {
    if (local) unregisterLocalPlugins(local);
    local = undefined;
    await cnid?.stop();
    if (cnid) log.info('stopped');
    cnid = undefined;
  }

  function metrics(): string {
    const served = cnid?.served ?? { socket: 0, 'in-process': 0 };
    return metricsText([
      counter('berth_cnid_requests_total', 'CNI plugin calls berth-cnid ran, by how they came: from a shim or berth-cri over the socket, or from a CRI in this process.', [
        { labels: { via: 'socket' }, value: served.socket },
        { labels: { via: 'in-process' }, value: served['in-process'] },
      ]),
      counter('berth_cnid_declined_busy_total', 'Callers berth-cnid declined because its connection limit was reached; they ran their plugins standalone.', cnid?.declinedBusy ?? 0),
    ]);
  }

  return { start, stop, metrics };
}
