import { errorMessage } from '../../lib/errors.js';
import type { RemovePodSandboxRequest, RemovePodSandboxResponse } from '../../proto/gen/runtime/v1/api.js';
import { deleteContainerRecord } from '../containerd/containers.js';
import { removeSnapshot } from '../containerd/snapshots.js';
import { removeSandboxFiles } from '../pod/sandbox-files.js';
import { removeContainerNow, stopSandbox } from '../pod/teardown.js';
import type { CriRuntime } from '../runtime.js';

// RemovePodSandbox: stops the pod if needed, removes its containers, record, snapshot and files.
// An unknown pod is a success.

export async function removePodSandbox(rt: CriRuntime, req: RemovePodSandboxRequest): Promise<RemovePodSandboxResponse> {
  const s = rt.sandboxes.find(req.podSandboxId);
  if (!s) return {};
  await stopSandbox(rt, s);
  for (const c of rt.containersOf(s.id)) await removeContainerNow(rt, c);
  await deleteContainerRecord(rt.client, s.id);
  await removeSnapshot(rt.client, s.id, rt.config.snapshotter);
  try {
    await removeSandboxFiles(s.dir);
  } catch (err) {
    rt.log.warn({ sandbox: s.id, err: errorMessage(err) }, 'removing sandbox files');
  }
  rt.forgetSandbox(s.id);
  rt.log.info({ sandbox: s.id, pod: s.name }, 'pod sandbox removed');
  return {};
}
