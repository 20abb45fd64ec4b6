import type { LevelWithSilent, Logger } from 'pino';
import type { Component, ComponentFactory } from './component.js';
import { errorMessage } from './errors.js';
import { createLogger } from './logger.js';
import { startMemoryTrim } from './memory-trim.js';
import { sdNotify, startWatchdog } from './sd-notify.js';
import { berthVersion } from './version.js';

// The start and stop every berth daemon shares: --help and --version, `NAME: message` on stderr
// and exit 1 when it cannot go on, READY and STOPPING for systemd, a graceful stop on SIGTERM or
// SIGINT that runs the daemon's close function once and exits 0, and a daemon that survives a
// promise rejection nobody handled (logged, never a crash a client could trigger at will).

/** What a daemon's main.ts hands to runDaemon. */
export interface DaemonProgram<Config> {
  /** The executable's name: the logger's name and the prefix of the fatal line. */
  name: string;
  usage: string;
  /** Printed by --version after the name (default: the suite's version). */
  version?: string;
  parseArgs(argv: string[]): Config | 'help' | 'version';
  /** Start serving; register the close function (onStop) and say ready() once serving. */
  serve(config: Config, daemon: Daemon): Promise<unknown>;
}

/** The process as a daemon sees it; tests give a fake one to send signals without a process. */
export interface DaemonHost {
  argv: readonly string[];
  /** Listen for a signal; returns the function that stops listening. */
  onSignal(signal: NodeJS.Signals, listener: () => void): () => void;
  /** Listen for promise rejections that no handler took (Node would otherwise end the process). */
  onUnhandledRejection(listener: (reason: unknown) => void): void;
  /** One sd_notify(3) state, such as READY=1. */
  notify(state: string): void;
  /** Start sending WATCHDOG=1 if systemd asked for it; returns the function that stops it. */
  startWatchdog(): () => void;
  /** Give the allocator's free memory back now and then (lib/memory-trim.ts); returns the function that stops it. */
  startMemoryTrim?(): () => void;
  write(stream: 'stdout' | 'stderr', text: string): void;
  exit(code: number): void;
}

export interface StopOptions {
  /**
   * Keep listening after the first signal and ignore the next ones. By default the first
   * signal stops gracefully and the next takes the signal's default action (the process ends at
   * once), so a stop that hangs can still be cut short.
   */
  ignoreRepeatedSignals?: boolean;
}

const processHost: DaemonHost = {
  argv: process.argv.slice(2),
  onSignal(signal, listener) {
    process.on(signal, listener);
    return () => void process.off(signal, listener);
  },
  onUnhandledRejection(listener) {
    process.on('unhandledRejection', listener);
  },
  notify: (state) => sdNotify(state),
  startWatchdog: () => startWatchdog(),
  startMemoryTrim: () => startMemoryTrim(),
  write: (stream, text) => void process[stream].write(text),
  exit: (code) => process.exit(code),
};

/** A running daemon's lifecycle: its logger, its close function, the stop and reload signals. */
export class Daemon {
  private log?: Logger;
  private close?: () => Promise<void> | void;
  private stopping?: Promise<void>;
  private reloading: Promise<void> = Promise.resolve();
  private stopWatchdog?: () => void;
  private stopMemoryTrim?: () => void;

  constructor(
    readonly name: string,
    private readonly host: DaemonHost = processHost,
  ) {}

  /** The daemon's logger (JSON on stdout); the stop is logged with it too. */
  logger(level?: LevelWithSilent): Logger {
    this.log = createLogger({ name: this.name, level });
    return this.log;
  }

  /** SIGTERM and SIGINT stop the daemon: STOPPING=1, then `close` once, then exit 0. */
  onStop(close: () => Promise<void> | void, options: StopOptions = {}): void {
    if (this.close) throw new Error(`${this.name}: onStop was called twice`);
    this.close = close;
    const stopSignals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];
    const unlisten = stopSignals.map((signal) =>
      this.host.onSignal(signal, () => {
        if (!options.ignoreRepeatedSignals) for (const off of unlisten) off();
        if (this.stopping) return void this.log?.info({ signal }, 'already stopping');
        this.log?.info({ signal }, 'stopping');
        void this.stop();
      }),
    );
  }

  /** SIGHUP runs `reload`, one at a time; a stop waits for the reload under way. A reload that throws is fatal. */
  onReload(reload: () => Promise<void>): void {
    this.host.onSignal('SIGHUP', () => {
      if (this.stopping) return void this.log?.info('SIGHUP while stopping; ignored');
      this.reloading = this.reloading.then(reload).catch((err: unknown) => void this.fail(err));
    });
  }

  /**
   * A rejection no code waited for: a bug, but one request's bug. Crashing would drop every
   * pod's streams and calls, and whoever can trigger it could keep the node's daemon down, so it
   * is logged with its stack and the daemon goes on.
   */
  unhandledRejection(reason: unknown): void {
    const err = reason instanceof Error ? { err: reason.message, stack: reason.stack } : { err: errorMessage(reason) };
    if (this.log) this.log.error(err, 'unhandled promise rejection; carrying on');
    else this.host.write('stderr', `${this.name}: unhandled promise rejection; carrying on: ${err.err}\n`);
  }

  /** Serving: READY=1 for a Type=notify unit, and the watchdog from now on if WatchdogSec= is set. */
  ready(status?: string): void {
    this.host.notify(status ? `READY=1\nSTATUS=${status}` : 'READY=1');
    this.stopWatchdog ??= this.host.startWatchdog();
    this.stopMemoryTrim ??= this.host.startMemoryTrim?.();
  }

  /** A line systemctl status shows (STATUS=). */
  status(text: string): void {
    this.host.notify(`STATUS=${text}`);
  }

  /**
   * Stop now, as a signal would, and exit with `exitCode` (or 1 when closing fails). A stop
   * already under way is not started again: the first one decides the exit code.
   */
  stop(exitCode = 0): Promise<void> {
    return this.stopOnce(exitCode);
  }

  /**
   * The daemon cannot go on: `NAME: message` on stderr and exit 1, after closing what onStop
   * registered. During a stop, the failure is taken for a consequence of it and the stop ends.
   */
  fail(err: unknown): Promise<void> {
    if (this.close || this.stopping) return this.stopOnce(1, err);
    this.host.write('stderr', `${this.name}: ${errorMessage(err)}\n`);
    this.host.exit(1);
    return Promise.resolve();
  }

  private stopOnce(exitCode: number, cause?: unknown): Promise<void> {
    this.stopping ??= this.closeAndExit(exitCode, cause);
    return this.stopping;
  }

  private async closeAndExit(exitCode: number, cause: unknown): Promise<void> {
    this.host.notify('STOPPING=1');
    this.stopWatchdog?.();
    this.stopMemoryTrim?.();
    try {
      await this.reloading;
      await this.close?.();
    } catch (err) {
      exitCode = 1;
      cause ??= err;
    }
    if (cause !== undefined) this.host.write('stderr', `${this.name}: ${errorMessage(cause)}\n`);
    this.host.exit(exitCode);
  }
}

/** A daemon's main: parse the arguments, answer --help/--version, run, and exit 1 on failure. */
export async function runDaemon<Config>(program: DaemonProgram<Config>, host: DaemonHost = processHost): Promise<void> {
  const daemon = new Daemon(program.name, host);
  host.onUnhandledRejection((reason) => daemon.unhandledRejection(reason));
  try {
    const args = program.parseArgs([...host.argv]);
    if (args === 'help') return host.write('stdout', program.usage);
    if (args === 'version') return host.write('stdout', `${program.name} ${program.version ?? berthVersion}\n`);
    await program.serve(args, daemon);
  } catch (err) {
    await daemon.fail(err);
  }
}

/**
 * A daemon that is one component (berth-cri, berth-csi, ...: berthd with one component): build
 * it, make SIGTERM stop it (registered first, so a start that hangs or fails is stopped too),
 * start it, and say READY. A component's fatal error stops the daemon with exit 1, for its
 * service manager to restart it.
 */
export async function serveComponent<Config>(
  daemon: Daemon,
  factory: ComponentFactory<Config>,
  config: Config,
  options: { logLevel?: LevelWithSilent; stop?: StopOptions } = {},
): Promise<{ component: Component<Config>; log: Logger }> {
  const log = daemon.logger(options.logLevel);
  const component = factory(config, {
    log,
    fatal: (err) => {
      log.fatal({ err: errorMessage(err) }, 'stopping');
      void daemon.stop(1);
    },
  });
  daemon.onStop(() => component.stop(), options.stop);
  await component.start();
  daemon.ready();
  return { component, log };
}
