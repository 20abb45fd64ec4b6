import { closeSync, constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { nativeAddon } from './native.js';

// Named pipes for container stdio. Node cannot create them (mkfifo comes from lib/native), and
// must never read them through fs: a blocked FIFO read holds a libuv pool thread. Every end here
// is opened O_NONBLOCK and wrapped in a net.Socket, which libuv drives through epoll.

/**
 * Create a FIFO at `path` (mode is subject to the umask). Throws an errno-style Error: code
 * 'EEXIST' when something already exists there, which callers that re-create may ignore.
 */
export function mkfifo(path: string, mode = 0o600): void {
  nativeAddon('mkfifo').mkfifo(path, mode);
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
