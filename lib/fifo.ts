import { closeSync, constants, existsSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { BerthError } from './errors.js';
import { nativeAddonPath } from './netns.js';

// Named pipes for container stdio. Node cannot create them (mkfifo comes from lib/native), and
// must never read them through fs: a blocked FIFO read holds a libuv pool thread. Every end here
// is opened O_NONBLOCK and wrapped in a net.Socket, which libuv drives through epoll.

interface FifoAddon {
  mkfifo(path: string, mode: number): void;
}

let addon: FifoAddon | undefined;

function native(): FifoAddon {
  if (addon) return addon;
  const path = nativeAddonPath();
  try {
    addon = createRequire(import.meta.url)(path) as FifoAddon;
  } catch (err) {
    const hint = existsSync(path) ? '' : ' (run `node scripts/build.mjs` to build it)';
    throw new BerthError('not-available', `cannot load the native addon ${path}${hint}`, { cause: err });
  }
  if (typeof addon.mkfifo !== 'function') {
    addon = undefined;
    throw new BerthError('not-available', `the native addon ${path} has no mkfifo (rebuild it with \`node scripts/build.mjs\`)`);
  }
  return addon;
}

/**
 * Create a FIFO at `path` (mode is subject to the umask). Throws an errno-style Error: code
 * 'EEXIST' when something already exists there, which callers that re-create may ignore.
 */
export function mkfifo(path: string, mode = 0o600): void {
  native().mkfifo(path, mode);
}

/**
 * The read end of an existing FIFO. Opening never blocks; while no process holds a write end,
 * reads see EOF, so callers that must outlast a missing writer hold one themselves
 * (openFifoKeepAlive).
 */
export function openFifoReader(path: string): Socket {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  return wrapFd(fd, { readable: true, writable: false });
}

/**
 * A write end of an existing FIFO. O_RDWR makes the open succeed without a reader (O_WRONLY
 * would fail with ENXIO), and writes wait in the pipe buffer until one appears.
 */
export function openFifoWriter(path: string): Socket {
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  return wrapFd(fd, { readable: false, writable: true });
}

/**
 * A bare write end that is never written: while it is open, readers of the FIFO see no EOF.
 * Returns the fd; close it with closeSync.
 */
export function openFifoKeepAlive(path: string): number {
  return openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
}

function wrapFd(fd: number, mode: { readable: boolean; writable: boolean }): Socket {
  try {
    return new Socket({ fd, ...mode });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
