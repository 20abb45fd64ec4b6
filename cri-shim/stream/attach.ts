import { BerthError, errorMessage } from '../../lib/errors.js';
import { ContainerState } from '../../proto/gen/runtime/v1/api.js';
import { closeStdin, resizePty } from '../containerd/tasks.js';
import type { CriRuntime } from '../runtime.js';
import type { ContainerRecord } from '../store/records.js';
import type { ExecStreams } from './exec.js';

// Attach: the client joins the running container's own stdio. Output is fanned out from the
// container's I/O (the same bytes the CRI log gets), so several clients can attach at once and
// a berth-cri restart does not matter (the I/O was reopened then). Input goes into the stdin
// FIFO; when a client's stdin ends and the container was created with StdinOnce, the
// container's stdin is closed, as kubelet expects. Resolves when the container exits or the
// client leaves.

export async function runAttach(rt: CriRuntime, c: ContainerRecord, streams: ExecStreams): Promise<void> {
  if (c.state !== ContainerState.CONTAINER_RUNNING || !c.io || !c.exited) {
    throw new BerthError('failed-precondition', `container ${c.id} is not running (${ContainerState[c.state]})`);
  }
  const io = c.io;
  const detach = io.attachOutput({
    stdout: (chunk) => void streams.stdout?.write(chunk),
    stderr: (chunk) => void (streams.tty ? streams.stdout : streams.stderr)?.write(chunk),
  });
  let writer: ReturnType<typeof io.stdinWriter> | undefined;
  try {
    if (streams.stdin && c.config.stdin) {
      writer = io.stdinWriter();
      writer.on('error', () => undefined);
      streams.stdin.pipe(writer, { end: false });
      streams.stdin.on('end', () => {
        writer?.end();
        if (!c.config.stdinOnce) return;
        // Our keep-alive end goes, and the shim closes the process's end: the FIFO's writers
        // closing is not enough for the shim to pass EOF on.
        io.closeStdin();
        void closeStdin(rt.client, c.id, '').catch((err: unknown) => rt.log.debug({ container: c.id, err: errorMessage(err) }, 'attach close stdin'));
      });
    }
    streams.onResize(({ width, height }) => {
      void resizePty(rt.client, c.id, '', width, height).catch((err: unknown) => rt.log.debug({ container: c.id, err: errorMessage(err) }, 'attach resize'));
    });
    await Promise.race([c.exited, streams.clientGone]);
  } finally {
    detach();
    writer?.destroy();
  }
}
