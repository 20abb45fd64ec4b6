import { randomBytes } from 'node:crypto';
import { BerthError } from '../../lib/errors.js';
import { decodeJsonAny, getContainerRecord } from '../containerd/containers.js';
import type { Spec } from '../oci/spec-types.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';

// The process an exec starts from: the container's own (user, environment, capabilities,
// security profile), read once from containerd's container record and kept for the container's
// life. The record's spec never changes after CreateContainer (UpdateContainerResources goes to
// the task's cgroup, not to the spec), so the copy cannot go stale.

export type ProcessSpec = NonNullable<Spec['process']>;

const cache = new WeakMap<ContainerRecord, ProcessSpec>();

/**
 * A new exec process ID. Its FIFOs are named `<container id>-<exec id>-<stream>` in the I/O
 * directory, which is how recovery tells an exec's FIFOs from the container's.
 */
export function newExecId(): string {
  return `exec-${randomBytes(6).toString('hex')}`;
}

/** How long an exec's output may keep flowing after it exited: a background child can hold the pipe. */
export const execDrainMs = 2000;

export async function containerProcessSpec(rt: CriRuntime, c: ContainerRecord): Promise<ProcessSpec> {
  const cached = cache.get(c);
  if (cached) return cached;
  const record = await getContainerRecord(rt.client, c.id);
  const process = decodeJsonAny<Spec>(record?.spec)?.process;
  if (!process) throw new BerthError('internal', `container ${c.id} has no process spec`);
  cache.set(c, process);
  return process;
}
