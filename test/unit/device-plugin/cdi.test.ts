import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Gpu } from '../../../device-plugin/backend/types.js';
import { cdiSpec, removeCdiSpec, writeCdiSpec } from '../../../device-plugin/cdi.js';
import { errorOf } from './fixtures.js';

function gpu(index: number): Gpu {
  return {
    index,
    uuid: `GPU-${String(index).repeat(8)}-1111-2222-3333-444444444444`,
    name: 'NVIDIA L4',
    memoryMiB: 23034,
    pciBusId: `00000000:0${index}:00.0`,
    numaNode: 0,
    devicePath: `/fake/dev/nvidia${index}`,
  };
}

describe('cdiSpec', () => {
  it('names every GPU by UUID and by index, with its device node, and adds the control devices spec-wide', () => {
    const spec = cdiSpec([gpu(1), gpu(0)], ['/dev/nvidiactl', '/fake/dev/nvidia-uvm'], 'nvidia.com/gpu');
    const node = (i: number) => ({ deviceNodes: [{ path: `/dev/nvidia${i}`, hostPath: `/fake/dev/nvidia${i}`, permissions: 'rw' }] });
    expect(spec).toEqual({
      cdiVersion: '0.6.0',
      kind: 'nvidia.com/gpu',
      devices: [
        { name: gpu(0).uuid, containerEdits: node(0) },
        { name: gpu(1).uuid, containerEdits: node(1) },
        { name: '0', containerEdits: node(0) },
        { name: '1', containerEdits: node(1) },
      ],
      containerEdits: {
        deviceNodes: [
          { path: '/dev/nvidiactl', hostPath: '/dev/nvidiactl', permissions: 'rw' },
          { path: '/dev/nvidia-uvm', hostPath: '/fake/dev/nvidia-uvm', permissions: 'rw' },
        ],
      },
    });
  });

  it('device names are unique', () => {
    const names = cdiSpec([gpu(0), gpu(1), gpu(2)], [], 'berth.dev/gpu').devices.map((d) => d.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it('no GPUs and no control devices give an empty but valid spec', () => {
    expect(cdiSpec([], [], 'berth.dev/gpu')).toEqual({ cdiVersion: '0.6.0', kind: 'berth.dev/gpu', devices: [], containerEdits: { deviceNodes: [] } });
  });

  it('an invalid kind is invalid-argument naming it', () => {
    for (const kind of ['gpu', 'nvidia.com/', '/gpu', 'a/b/c']) {
      const err = errorOf(() => cdiSpec([], [], kind));
      expect(err.kind).toBe('invalid-argument');
      expect(err.message).toContain(kind);
    }
  });

  it('a UUID that cannot be a CDI device name is invalid-argument naming it', () => {
    const err = errorOf(() => cdiSpec([{ ...gpu(0), uuid: 'GPU 0/bad' }], [], 'nvidia.com/gpu'));
    expect(err.kind).toBe('invalid-argument');
    expect(err.message).toContain('GPU 0/bad');
  });
});

describe('writeCdiSpec / removeCdiSpec', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-cdi-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the spec as JSON, mode 0644, leaving no temp file', () => {
    const spec = cdiSpec([gpu(0)], ['/dev/nvidiactl'], 'nvidia.com/gpu');
    const path = writeCdiSpec(dir, spec);
    expect(path).toBe(join(dir, 'berth-gpu.json'));
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(spec);
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir)).toEqual(['berth-gpu.json']);
  });

  it('replaces an existing spec whole', () => {
    writeCdiSpec(dir, cdiSpec([gpu(0), gpu(1)], [], 'nvidia.com/gpu'));
    const smaller = cdiSpec([gpu(0)], [], 'nvidia.com/gpu');
    writeCdiSpec(dir, smaller);
    expect(JSON.parse(readFileSync(join(dir, 'berth-gpu.json'), 'utf8'))).toEqual(smaller);
  });

  it('creates a missing directory and honours a file name', () => {
    const nested = join(dir, 'run', 'cdi');
    const path = writeCdiSpec(nested, cdiSpec([], [], 'nvidia.com/gpu'), 'other.json');
    expect(path).toBe(join(nested, 'other.json'));
    expect(existsSync(path)).toBe(true);
  });

  it('remove deletes the spec and is idempotent', () => {
    writeCdiSpec(dir, cdiSpec([], [], 'nvidia.com/gpu'));
    expect(removeCdiSpec(dir)).toBe(true);
    expect(existsSync(join(dir, 'berth-gpu.json'))).toBe(false);
    expect(removeCdiSpec(dir)).toBe(false);
  });

  it('refuses a file name the CDI cache would not read, or one outside the directory', () => {
    for (const name of ['spec.txt', '../escape.json', '.hidden.json', 'a/b.json']) {
      expect(errorOf(() => writeCdiSpec(dir, {}, name)).kind).toBe('invalid-argument');
      expect(errorOf(() => removeCdiSpec(dir, name)).kind).toBe('invalid-argument');
    }
    expect(readdirSync(dir)).toEqual([]);
  });
});
