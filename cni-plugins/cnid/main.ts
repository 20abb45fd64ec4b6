// berth-cnid: keeps berth's CNI plugins loaded in one resident process, so that a plugin call
// costs a unix-socket round trip instead of a Node start. The plugin executables in dist/cni are
// a small C shim that forwards to this daemon and runs the JS plugin itself when the daemon is
// absent or differs from it (see protocol.ts and server.ts).
import { executePlugin } from '../../lib/cni/skeleton.js';
import { runDaemon, type Daemon } from '../../lib/daemon.js';
import { errorMessage } from '../../lib/errors.js';
import { levelFromEnv } from '../../lib/logger.js';
import { loadNetlink } from '../../lib/netlink/socket.js';
import { withNetns } from '../../lib/netns.js';
import { hostLocalPlugin } from '../host-local/plugin.js';
import { bridgePlugin } from '../bridge/plugin.js';
import { loopbackPlugin } from '../loopback/plugin.js';
import { overlayPlugin } from '../overlay/plugin.js';
import { portmapPlugin } from '../portmap/plugin.js';
import { CniDaemon, type AnyPlugin } from './server.js';

/** esbuild defines this in the dist bundle (scripts/build.mjs); the shim carries the same id. */
declare const BERTH_BUILD_ID: string | undefined;
const buildId = typeof BERTH_BUILD_ID !== 'undefined' ? BERTH_BUILD_ID : 'source';

export const defaultSocket = '/run/berth/cni.sock';

const plugins: AnyPlugin[] = [
  bridgePlugin,
  loopbackPlugin,
  hostLocalPlugin,
  portmapPlugin,
  overlayPlugin,
];

const usage = `berth-cnid: serves berth's CNI plugins from one resident process

Usage: berth-cnid [--socket PATH]

  --socket PATH  unix socket to listen on (default $BERTH_CNI_SOCKET or ${defaultSocket});
                 created with mode 0600, its directory with 0755. Under systemd socket
                 activation (LISTEN_FDS) the inherited socket is used instead.
  --version      print the build id and exit
  --help         this text

The plugin executables (dist/cni/berth-*) connect to $BERTH_CNI_SOCKET or ${defaultSocket}
and run the plugin themselves when no daemon of their own build answers.
BERTH_LOG_LEVEL=fatal|error|warn|info|debug sets the daemon's log level (JSON on stdout,
default info). SIGTERM or SIGINT stops accepting and finishes the requests under way.
Plugins served: ${plugins.map((p) => p.name).join(', ')}.
`;

function parseArgs(argv: string[]): { socket: string } | 'help' | 'version' {
  let socket = process.env.BERTH_CNI_SOCKET || defaultSocket;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--version') return 'version';
    if (arg === '--socket' && argv[i + 1]) socket = argv[++i]!;
    else if (arg.startsWith('--socket=') && arg.length > 9) socket = arg.slice(9);
    else throw new Error(`unknown or incomplete argument ${JSON.stringify(arg)} (see --help)`);
  }
  return { socket };
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

async function serve(args: { socket: string }, daemon: Daemon): Promise<void> {
  const log = daemon.logger(levelFromEnv('info'));
  // The daemon's own level is not the plugins': inside the daemon they log at their default
  // level, and a caller asking for another one is run standalone (see server.ts).
  delete process.env.BERTH_LOG_LEVEL;
  process.on('uncaughtException', (err) => {
    log.fatal({ err: errorMessage(err), stack: err.stack }, 'uncaught exception; exiting');
    process.exit(1);
  });

  const cnid = new CniDaemon({ plugins, buildId, log });
  await warmUp();
  const fd = inheritedSocket();
  if (fd !== undefined) await cnid.listenOnFd(fd);
  else await cnid.listenOnPath(args.socket);
  log.info({ socket: fd === undefined ? args.socket : `fd ${fd} (socket activation)`, buildId, plugins: cnid.pluginNames }, 'listening');

  // The calls under way always finish: a repeated SIGTERM must not end the process in the middle
  // of a plugin's netlink or iptables work (the unit's TimeoutStopSec and SIGKILL bound the wait).
  daemon.onStop(async () => {
    await cnid.stop();
    log.info('stopped');
  }, { ignoreRepeatedSignals: true });
  daemon.ready();
}

runDaemon({ name: 'berth-cnid', version: buildId, usage, parseArgs, serve });
