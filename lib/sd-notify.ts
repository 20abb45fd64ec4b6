import { spawn } from 'node:child_process';
import { nativeAddon } from './native.js';

// Talking to systemd as a Type=notify service: READY=1, STOPPING=1, STATUS=..., and the
// watchdog's WATCHDOG=1. Outside systemd (no $NOTIFY_SOCKET) nothing is sent.

/**
 * One sd_notify(3) state. Sent by this process through the native addon (so NotifyAccess=main
 * is enough); without the addon, through systemd-notify --pid (the unit then needs
 * NotifyAccess=all). Never throws: a notification that cannot be sent is dropped.
 */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): void {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return;
  try {
    nativeAddon('sdNotify').sdNotify(socket, state);
  } catch {
    spawn('systemd-notify', [`--pid=${process.pid}`, state], { stdio: 'ignore' }).on('error', () => undefined);
  }
}

/**
 * How often to send WATCHDOG=1, in ms: half of WatchdogSec= (as sd_watchdog_enabled(3) advises),
 * or undefined when systemd asked for no watchdog or asked another process (WATCHDOG_PID).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && env.WATCHDOG_PID !== String(pid)) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * Send WATCHDOG=1 every half WatchdogSec from a timer on the event loop: a loop stuck in one
 * callback sends nothing, and systemd kills and restarts the service (Restart=). Returns the
 * function that stops it; a no-op when no watchdog is asked for.
 */
export function startWatchdog(notify: (state: string) => void = sdNotify, env: NodeJS.ProcessEnv = process.env): () => void {
  const interval = watchdogIntervalMs(env);
  if (interval === undefined) return () => undefined;
  notify('WATCHDOG=1');
  const timer = setInterval(() => notify('WATCHDOG=1'), interval);
  timer.unref();
  return () => clearInterval(timer);
}
