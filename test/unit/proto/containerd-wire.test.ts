import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TaskExit } from '../../../proto/gen/github.com/containerd/containerd/api/events/task.js';
import { Container, ContainersService } from '../../../proto/gen/github.com/containerd/containerd/api/services/containers/v1/containers.js';
import { Envelope } from '../../../proto/gen/github.com/containerd/containerd/api/services/events/v1/events.js';
import { CreateTaskRequest, TasksService } from '../../../proto/gen/github.com/containerd/containerd/api/services/tasks/v1/tasks.js';
import { Status } from '../../../proto/gen/github.com/containerd/containerd/api/types/task/task.js';
import { ExecProcessRequest, StartResponse, TaskService, WaitResponse } from '../../../proto/gen/github.com/containerd/containerd/runtime/v2/task/shim.js';
import { Request, Response } from '../../../proto/gen/github.com/containerd/ttrpc/request.js';
import { repoRoot } from '../../../world/cni.js';

// containerd 1.6-2.x decode what berth-cri sends by field number, and route calls by the
// "/package.Service/Method" path: a renumbered field or renamed package would fail silently.
// These check tags on the wire (field number << 3 | wire type) for fields the shim relies on,
// and that the checked-in TypeScript is what proto/containerd (+ proto/google) generates.

const tag = (field: number, wireType: number) => (field << 3) | wireType;
const bytes = (b: Uint8Array) => [...b];
const str = (s: string) => [s.length, ...Buffer.from(s)];

describe('containerd API on the wire', () => {
  it('containers.v1 Container: id is 1, labels a map at 2, image 3', () => {
    const b = Container.encode(Container.fromPartial({ id: 'a', labels: { k: 'v' }, image: 'i' })).finish();
    // labels: one entry message { key = 1, value = 2 }
    expect(bytes(b)).toEqual([tag(1, 2), ...str('a'), tag(2, 2), 6, tag(1, 2), ...str('k'), tag(2, 2), ...str('v'), tag(3, 2), ...str('i')]);
  });

  it('tasks.v1 CreateTaskRequest: container_id is 1, rootfs 3 (Mount type 1, source 2), terminal 7', () => {
    const b = CreateTaskRequest.encode(
      CreateTaskRequest.fromPartial({ containerId: 'c', rootfs: [{ type: 'overlay', source: 's' }], terminal: true }),
    ).finish();
    expect(bytes(b)).toEqual([tag(1, 2), ...str('c'), tag(3, 2), 12, tag(1, 2), ...str('overlay'), tag(2, 2), ...str('s'), tag(7, 0), 1]);
  });

  it('events: an Envelope (topic 3, event 4 as Any) carrying a TaskExit (pid 3, exit_status 4) decodes', () => {
    const exit = TaskExit.encode(TaskExit.fromPartial({ containerId: 'c', id: 'c', pid: 42, exitStatus: 137 })).finish();
    expect(bytes(exit)).toEqual([tag(1, 2), ...str('c'), tag(2, 2), ...str('c'), tag(3, 0), 42, tag(4, 0), 137, 1]);
    const env = Envelope.encode(
      Envelope.fromPartial({ namespace: 'k8s.io', topic: '/tasks/exit', event: { typeUrl: 'containerd.events.TaskExit', value: Buffer.from(exit) } }),
    ).finish();
    expect(bytes(env.subarray(0, 9))).toEqual([tag(2, 2), ...str('k8s.io'), tag(3, 2)]);
    const back = Envelope.decode(env);
    expect(back.topic).toBe('/tasks/exit');
    expect(TaskExit.decode(back.event!.value)).toMatchObject({ pid: 42, exitStatus: 137 });
  });

  it('task status numbers and gRPC method paths are upstream\'s', () => {
    expect([Status.UNKNOWN, Status.CREATED, Status.RUNNING, Status.STOPPED, Status.PAUSED, Status.PAUSING]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(ContainersService.create.path).toBe('/containerd.services.containers.v1.Containers/Create');
    expect(TasksService.create.path).toBe('/containerd.services.tasks.v1.Tasks/Create');
    expect(TasksService.wait.path).toBe('/containerd.services.tasks.v1.Tasks/Wait');
  });

  it('ttrpc Request (service 1, method 2, payload 3, timeout_nano 4, metadata 5) and a shim ExecProcessRequest (id 1, exec_id 2, terminal 3, stdout 5, spec 7)', () => {
    const exec = ExecProcessRequest.encode(ExecProcessRequest.fromPartial({ id: 'c', execId: 'e', terminal: true, stdout: 'o', spec: { typeUrl: 't', value: Buffer.from('x') } })).finish();
    expect(bytes(exec)).toEqual([tag(1, 2), ...str('c'), tag(2, 2), ...str('e'), tag(3, 0), 1, tag(5, 2), ...str('o'), tag(7, 2), 6, tag(1, 2), ...str('t'), tag(2, 2), ...str('x')]);
    const req = Request.encode(Request.fromPartial({ service: 's', method: 'm', payload: Buffer.from([9]), timeoutNano: 5n, metadata: [{ key: 'k', value: 'v' }] })).finish();
    expect(bytes(req)).toEqual([tag(1, 2), ...str('s'), tag(2, 2), ...str('m'), tag(3, 2), 1, 9, tag(4, 0), 5, tag(5, 2), 6, tag(1, 2), ...str('k'), tag(2, 2), ...str('v')]);
    // Response: status 1 (google.rpc.Status: code 1, message 2), payload 2.
    expect(Response.decode(Buffer.from([tag(1, 2), 5, tag(1, 0), 5, tag(2, 2), ...str('n'), tag(2, 2), ...str('p')]))).toMatchObject({ status: { code: 5, message: 'n' }, payload: Buffer.from('p') });
    // Wait (exit_status 1) and Start (pid 1) answers.
    expect(WaitResponse.decode(Buffer.from([tag(1, 0), 3])).exitStatus).toBe(3);
    expect(StartResponse.decode(Buffer.from([tag(1, 0), 42])).pid).toBe(42);
    expect(TaskService.exec.path).toBe('/containerd.task.v2.Task/Exec');
  });

  it('proto/gen holds what scripts/gen-proto.sh generates from proto/containerd and proto/google', (ctx) => {
    if (spawnSync('protoc', ['--version']).status !== 0) {
      console.log('skipped: protoc is not installed (apt-get install protobuf-compiler)');
      ctx.skip();
    }
    const out = mkdtempSync(join(tmpdir(), 'berth-gen-'));
    try {
      execFileSync('bash', [join(repoRoot, 'scripts/gen-proto.sh'), out], { cwd: repoRoot, stdio: 'pipe' });
      const list = (root: string) =>
        ['github.com', 'google']
          .flatMap((dir) => readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)))
          .filter((f) => f.endsWith('.ts'))
          .sort();
      const files = list(out);
      expect(files).toEqual(list(join(repoRoot, 'proto/gen')));
      expect(files.length).toBeGreaterThan(20);
      for (const file of files) {
        expect(readFileSync(join(out, file), 'utf8'), file).toBe(readFileSync(join(repoRoot, 'proto/gen', file), 'utf8'));
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
