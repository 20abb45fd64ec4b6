import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { CriRuntime } from '../../../../cri-shim/runtime.js';
import { runAttach } from '../../../../cri-shim/stream/attach.js';
import type { ExecStreams } from '../../../../cri-shim/stream/exec.js';
import type { ContainerRecord } from '../../../../cri-shim/store/records.js';
import type { OutputListener } from '../../../../cri-shim/io/container-io.js';
import { ContainerState } from '../../../../proto/gen/runtime/v1/api.js';

// Attach's fan-out of a container's output: a client that stops reading is dropped once it is
// streamAttachBufferSize behind, while the container's output and the other clients go on.

/** A container whose output the test pushes, as ContainerIO would. */
function fakeContainer() {
  const listeners = new Set<OutputListener>();
  let exit!: () => void;
  const c = {
    id: 'c1',
    state: ContainerState.CONTAINER_RUNNING,
    config: { stdin: false, stdinOnce: false },
    exited: new Promise<void>((resolve) => (exit = resolve)),
    io: {
      attachOutput(l: OutputListener) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    },
  } as unknown as ContainerRecord;
  return { c, write: (chunk: Buffer) => listeners.forEach((l) => l.stdout?.(chunk)), exit: () => exit(), listeners };
}

/** A client stream that reads (or, `reading` false, never completes a write). */
function client(reading: boolean): { sink: Writable; got: () => number } {
  let got = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      got += chunk.length;
      if (reading) done();
    },
  });
  return { sink, got: () => got };
}

const streamsOf = (stdout: Writable): ExecStreams => ({ stdout, tty: false, onResize: () => undefined, clientGone: new Promise(() => undefined) });

describe('attach fan-out', () => {
  it('drops a client that stops reading, without holding up the container or the client that reads', async () => {
    const rt = { config: { streamAttachBufferSize: 1024 * 1024 }, log: pino({ level: 'silent' }) } as unknown as CriRuntime;
    const { c, write, exit, listeners } = fakeContainer();
    const slow = client(false);
    const fast = client(true);
    const slowAttach = runAttach(rt, c, streamsOf(slow.sink));
    const fastAttach = runAttach(rt, c, streamsOf(fast.sink));
    const chunk = Buffer.alloc(64 * 1024, 'y');
    // 8 MiB of output; every write returns at once.
    for (let i = 0; i < 128; i++) write(chunk);
    await expect(slowAttach).rejects.toMatchObject({ kind: 'resource-exhausted', message: expect.stringMatching(/streamAttachBufferSize/) });
    expect(slow.sink.writableLength).toBeLessThanOrEqual(1024 * 1024 + chunk.length);
    expect(listeners.size).toBe(1);
    expect(fast.got()).toBe(128 * chunk.length);
    exit();
    await fastAttach;
    expect(listeners.size).toBe(0);
  });
});
