// berth-cnid: keeps berth's CNI plugins loaded in one resident process (see component.ts);
// berthd with only the cnid component, for operators who run each component as its own unit.
import { runDaemon, serveComponent } from '../../lib/daemon.js';
import { errorMessage } from '../../lib/errors.js';
import { levelFromEnv } from '../../lib/logger.js';
import { buildId, cnidComponent, defaultSocket, plugins } from './component.js';

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

runDaemon({
  name: 'berth-cnid',
  version: buildId,
  usage,
  parseArgs,
  async serve(config, daemon) {
    // A repeated SIGTERM must not end the process in the middle of a plugin's work (the unit's
    // TimeoutStopSec and SIGKILL bound the wait).
    const { log } = await serveComponent(daemon, cnidComponent, config, { logLevel: levelFromEnv('info'), stop: { ignoreRepeatedSignals: true } });
    process.on('uncaughtException', (err) => {
      log.fatal({ err: errorMessage(err), stack: err.stack }, 'uncaught exception; exiting');
      process.exit(1);
    });
  },
});
