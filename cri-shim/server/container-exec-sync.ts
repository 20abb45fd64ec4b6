import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { maxMessageBytes } from '../../lib/grpc/unix-socket.js';
import { ContainerState, type ExecSyncRequest, type ExecSyncResponse } from '../../proto/gen/runtime/v1/api.js';
import { containerdExecCalls, createExecProcess, type ExecCalls } from '../containerd/shim.js';
import { killTask } from '../containerd/tasks.js';
import { ExecIO, fitOutput } from '../io/exec-io.js';
import { containerProcessSpec, execDrainMs, newExecId } from '../pod/exec-process.js';
import { ioDir } from '../pod/io-wiring.js';
import type { CriRuntime } from '../runtime.js';

// ExecSync: run a command in a running container (containerd task exec) and return its exit
// code and output. The process inherits the container's user, environment, capabilities and
// security profile; only the arguments differ. A timeout kills it and returns DeadlineExceeded.
// Output past execSyncOutputLimit per stream, or past what one reply can carry, is cut (the
// first bytes are kept, as containerd does), never an error.

/** The reply's room for output: the gRPC message limit, less the few bytes of its framing and exit code. */
const replyOutputBudget = maxMessageBytes - 1024;

export async function execSync(rt: CriRuntime, req: ExecSyncRequest): Promise<ExecSyncResponse> {
  const c = rt.container(req.containerId);
  if (req.cmd.length === 0) throw new BerthError('invalid-argument', 'cmd must not be empty');
  if (c.state !== ContainerState.CONTAINER_RUNNING) {
    throw new BerthError('failed-precondition', `container_id: container ${c.id} is not running (${ContainerState[c.state]})`);
  }
  const process = { ...(await containerProcessSpec(rt, c)), args: req.cmd, terminal: false };

  const execId = newExecId();
  const io = new ExecIO({ id: `${c.id}-${execId}`, dir: ioDir(rt), maxBytes: rt.config.execSyncOutputLimit });
  io.create();
  // Straight to the shim where it can be (containerd/shim.ts), else through containerd.
  let calls: ExecCalls = containerdExecCalls(rt.client, c.id);
  try {
    calls = await createExecProcess(rt.shims, rt.client, c.id, execId, process, io.fifos, (err) =>
      rt.log.debug({ container: c.id, err: errorMessage(err) }, 'ExecSync: the shim cannot be reached, going through containerd'),
    );
    // Wait goes in before Start (a quick exit is not missed) and is observed at once: a Start
    // that fails (the container is being killed) must not leave its rejection unhandled.
    const exited = calls.wait(execId);
    exited.catch(() => undefined);
    await calls.start(execId);
    const timeoutMs = Number(req.timeout) * 1000;
    const result = timeoutMs > 0 ? await Promise.race([exited, sleep(timeoutMs).then(() => undefined)]) : await exited;
    if (!result) {
      await killTask(rt.client, c.id, 9, { execId });
      await exited.catch(() => undefined);
      io.processExited(0);
      throw new BerthError('deadline-exceeded', `command ${JSON.stringify(req.cmd)} timed out after ${req.timeout}s`);
    }
    io.processExited(execDrainMs);
    const output = await io.output();
    const { stdout, stderr } = fitOutput(output.stdout, output.stderr, replyOutputBudget);
    if (output.truncated.stdout || output.truncated.stderr || stdout.length + stderr.length < output.stdout.length + output.stderr.length) {
      rt.log.debug({ container: c.id, execId, stdout: stdout.length, stderr: stderr.length }, 'ExecSync output truncated');
    }
    rt.log.debug({ container: c.id, execId, via: calls.via, exitCode: result.exitStatus }, 'ExecSync done');
    return { stdout, stderr, exitCode: result.exitStatus };
  } finally {
    // The answer does not wait for the shim to forget the process.
    void calls
      .delete(execId)
      .catch(() => undefined)
      .then(() => io.close());
  }
}
