// A daemon that serves nothing: only lib/daemon.ts's start and stop, for daemon.test.ts to run as
// a child process. FIXTURE_CLOSE_MS is how long closing takes; FIXTURE_IGNORE_REPEATS=1 sets
// ignoreRepeatedSignals; FIXTURE_REJECT=1 leaves a rejected promise unhandled once serving. Every
// step is a JSON log line on stdout.
import { setTimeout as sleep } from 'node:timers/promises';
import { runDaemon, type Daemon } from '../../../lib/daemon.js';

function parseArgs(argv: string[]): { closeMs: number; ignoreRepeats: boolean } | 'help' | 'version' {
  if (argv[0] === '--help') return 'help';
  if (argv[0] === '--version') return 'version';
  if (argv.length) throw new Error(`unknown argument ${argv[0]}`);
  return { closeMs: Number(process.env.FIXTURE_CLOSE_MS ?? 0), ignoreRepeats: process.env.FIXTURE_IGNORE_REPEATS === '1' };
}

async function serve(config: { closeMs: number; ignoreRepeats: boolean }, daemon: Daemon): Promise<void> {
  const log = daemon.logger('info');
  const keepAlive = setInterval(() => undefined, 60_000);
  daemon.onStop(async () => {
    log.info('closing');
    await sleep(config.closeMs);
    clearInterval(keepAlive);
    log.info('closed');
  }, { ignoreRepeatedSignals: config.ignoreRepeats });
  log.info('serving');
  daemon.ready();
  // A promise that fails with nobody waiting for it, as a bug in a request handler would leave.
  if (process.env.FIXTURE_REJECT === '1') void Promise.reject(new Error('nobody waited for this'));
}

runDaemon({ name: 'berth-fixture', usage: 'usage: berth-fixture\n', parseArgs, serve });
