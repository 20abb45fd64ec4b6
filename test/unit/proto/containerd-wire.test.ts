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
