import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CriRuntime } from '../../../../cri-shim/runtime.js';
import { execSync } from '../../../../cri-shim/server/container-exec-sync.js';
import { prepareExec } from '../../../../cri-shim/stream/exec.js';
import type { ContainerRecord } from '../../../../cri-shim/store/records.js';
import { ContainerState, ExecSyncRequest } from '../../../../proto/gen/runtime/v1/api.js';

// An exec whose Start fails because the container is being killed: containerd's Wait for the
// process then fails too, a moment later. That failure must be observed (an unhandled
// rejection ends a Node process), in ExecSync and in a streaming exec alike.

const killed = new Error('container is being killed');

// Plain functions, not vi.fn: a spy observes the promises it returns, which would hide the
// very rejection this is about.
vi.mock('../../../../cri-shim/containerd/tasks.js', () => ({
  execProcess: async () => undefined,
  startTask: async () => {
    throw killed;
  },
  // Wait fails once the process is gone, after Start has failed.
  waitTask: async () => {
    await sleep(20);
    throw new Error('process not found');
  },
  killTask: async () => undefined,
  deleteProcess: async () => undefined,
  closeStdin: async () => undefined,
  resizePty: async () => undefined,
}));

vi.mock('../../../../cri-shim/pod/exec-process.js', async (original) => ({
  ...(await original<object>()),
  containerProcessSpec: async () => ({ args: [], env: [], cwd: '/' }),
}));

// The same calls straight to the shim (containerd/shim.ts) as through containerd (the mock above).
const shimCalls = {
  via: 'shim',
  exec: async () => undefined,
  start: async () => {
    throw killed;
  },
  wait: async () => {
    await sleep(20);
    throw new Error('process not found');
  },
  delete: async () => undefined,
};

describe.each([
  ['through containerd', undefined],
  ['straight to the shim', shimCalls],
])('exec into a container being killed, %s', (_via, calls) => {
  let dir = '';
  let rt!: CriRuntime;
  const c = { id: 'c1', state: ContainerState.CONTAINER_RUNNING } as ContainerRecord;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-exec-'));
    rt = { config: { state: dir, execSyncOutputLimit: 1 << 20 }, client: {}, shims: { execCalls: () => calls }, log: pino({ level: 'silent' }), container: () => c } as unknown as CriRuntime;
    unhandled.length = 0;
    process.on('unhandledRejection', onUnhandled);
  });
  afterEach(() => {
    process.off('unhandledRejection', onUnhandled);
    rmSync(dir, { recursive: true, force: true });
  });

  it('ExecSync fails with the Start error and leaves no unhandled rejection', async () => {
    await expect(execSync(rt, ExecSyncRequest.fromPartial({ containerId: 'c1', cmd: ['true'] }))).rejects.toBe(killed);
    await sleep(100);
    expect(unhandled).toEqual([]);
  });

  it('a streaming exec fails with the Start error and leaves no unhandled rejection', async () => {
    const prepared = await prepareExec(rt, c, ['true'], { stdin: false, stdout: false, stderr: false, tty: false });
    await expect(prepared.start({ tty: false, onResize: () => undefined, clientGone: new Promise(() => undefined) })).rejects.toBe(killed);
    await sleep(100);
    expect(unhandled).toEqual([]);
  });
});
