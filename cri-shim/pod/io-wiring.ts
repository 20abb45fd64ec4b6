import { join } from 'node:path';
import { ContainerIO, type ContainerIOOptions } from '../io/container-io.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';

// Where a container's stdio FIFOs live and how its ContainerIO (FIFOs -> CRI log) is set up, for
// CreateContainer, RemoveContainer, exec and the restart recovery.

export function ioDir(rt: CriRuntime): string {
  return join(rt.config.state, 'io');
}

export function containerIO(rt: CriRuntime, c: ContainerRecord): ContainerIO {
  return new ContainerIO(containerIOOptions(rt, c));
}

export function containerIOOptions(rt: CriRuntime, c: ContainerRecord): ContainerIOOptions {
  return {
    id: c.id,
    dir: ioDir(rt),
    logPath: c.logPath || undefined,
    logDirectory: rt.sandboxes.find(c.sandboxId)?.config.logDirectory || undefined,
    stdin: c.config.stdin,
    tty: c.config.tty,
    maxLogLineBytes: rt.config.maxContainerLogLineSize,
    onError: (err) => rt.log.warn({ container: c.id, err: err.message }, 'container I/O'),
  };
}
