import { constants } from 'node:os';
import { BerthError } from '../../lib/errors.js';

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
