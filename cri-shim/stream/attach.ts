import type { Writable } from 'node:stream';
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
// client leaves. A client that stops reading is dropped once it is streamAttachBufferSize
// behind, rather than holding up the container, its log and the other clients.

export async function runAttach(rt: CriRuntime, c: ContainerRecord, streams: ExecStreams): Promise<void> {
  if (c.state !== ContainerState.CONTAINER_RUNNING || !c.io || !c.exited) {
    throw new BerthError('failed-precondition', `container ${c.id} is not running (${ContainerState[c.state]})`);
  }
  const io = c.io;
  const limit = rt.config.streamAttachBufferSize;
  let dropped = false;
  let fellBehind!: (err: Error) => void;
  const behind = new Promise<void>((_resolve, reject) => (fellBehind = reject));
  behind.catch(() => undefined);
  /** The container's output to one of the client's streams, while the client keeps up. */
  const forward =
    (sink: Writable | undefined) =>
    (chunk: Buffer): void => {
      if (!sink || dropped) return;
      if (sink.writableLength > limit) {
        dropped = true;
        fellBehind(new BerthError('resource-exhausted', `attach to container ${c.id}: the client fell more than ${limit} bytes behind its output (streamAttachBufferSize)`));
        return;
      }
      sink.write(chunk);
    };
  const detach = io.attachOutput({ stdout: forward(streams.stdout), stderr: forward(streams.tty ? streams.stdout : streams.stderr) });
  let writer: ReturnType<typeof io.stdinWriter> | undefined;
  try {
    if (streams.stdin && !c.config.stdin) {
      // The container has no stdin: what the client types is dropped, not left to fill the connection.
      streams.stdin.resume();
    } else if (streams.stdin) {
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
    await Promise.race([c.exited, streams.clientGone, behind]);
  } finally {
    detach();
    writer?.destroy();
  }
}
