import { constants } from 'node:os';
import { BerthError } from '../../lib/errors.js';
import { Signal } from '../../proto/gen/runtime/v1/api.js';

// Signal names as images and CRI configs spell them.

/** Signal number for an image StopSignal ("SIGQUIT", "QUIT" or "3"); SIGTERM by default. */
export function signalNumber(name: string): number {
  if (!name) return constants.signals.SIGTERM;
  if (/^\d+$/.test(name)) return Number(name);
  const upper = name.toUpperCase();
  const key = (upper.startsWith('SIG') ? upper : `SIG${upper}`) as keyof typeof constants.signals;
  const n = constants.signals[key];
  if (n === undefined) throw new BerthError('invalid-argument', `image StopSignal "${name}" is not a known signal`);
  return n;
}

/**
 * Signal numbers by name as Linux numbers them: Node's table plus the alias SIGCLD and the
 * realtime signals (SIGRTMIN is 34 under glibc, which keeps 32 and 33 for itself; SIGRTMAX 64),
 * which the CRI Signal enum names SIGRTMINPLUSn and SIGRTMAXMINUSn.
 */
function linuxSignals(): Map<string, number> {
  const table = new Map<string, number>(Object.entries(constants.signals));
  table.set('SIGCLD', constants.signals.SIGCHLD);
  table.set('SIGRTMIN', 34);
  table.set('SIGRTMAX', 64);
  for (let n = 1; n <= 15; n++) table.set(`SIGRTMINPLUS${n}`, 34 + n);
  for (let n = 1; n <= 14; n++) table.set(`SIGRTMAXMINUS${n}`, 64 - n);
  return table;
}
const signalTable = linuxSignals();

/** The number of a CRI ContainerConfig.stop_signal (SIGNAL_SIGINT -> 2); undefined for the runtime default. */
export function criSignalNumber(signal: Signal): number | undefined {
  if (signal === Signal.SIGNAL_RUNTIME_DEFAULT) return undefined;
  const name = Signal[signal]?.replace(/^SIGNAL_/, '');
  const n = name ? signalTable.get(name) : undefined;
  if (n === undefined) throw new BerthError('invalid-argument', `config.stop_signal: ${signal} is not a signal this host knows`);
  return n;
}

/** The CRI Signal for a signal number (ContainerStatus.stop_signal); the runtime default when it has none. */
export function criSignalOf(n: number): Signal {
  for (const [name, value] of signalTable) {
    if (value !== n) continue;
    const signal = (Signal as unknown as Record<string, number | undefined>)[`SIGNAL_${name}`];
    if (signal !== undefined) return signal as Signal;
  }
  return Signal.SIGNAL_RUNTIME_DEFAULT;
}
