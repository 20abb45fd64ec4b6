import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import { FakeBackend } from '../../../../device-plugin/backend/fake.js';
import type { HealthEvent } from '../../../../device-plugin/backend/types.js';
import { isRoot } from '../../../../world/netns.js';

// The fake GPU backend against a real directory: gpus.json in, real character device nodes
// (mknod, root only) and health events from an appended file out. Every test gets its own
// directory, removed after it together with the device nodes in it, even when the test fails.

const base = isRoot ? '/var/lib/berth-test' : tmpdir();
const made: string[] = [];
const backends: FakeBackend[] = [];
const warnings: string[] = [];
const log = { info: () => {}, warn: (msg: string) => void warnings.push(msg) };

const uuids = ['GPU-11111111-2222-3333-4444-555555555550', 'GPU-11111111-2222-3333-4444-555555555551', 'GPU-11111111-2222-3333-4444-555555555552', 'GPU-11111111-2222-3333-4444-555555555553'] as const;
const fourGpus = [
  { index: 0, uuid: uuids[0], name: 'NVIDIA A100-SXM4-80GB', memoryMiB: 81920, pciBusId: '00000000:07:00.0', numaNode: 0, nvlinks: { [uuids[1]]: 12 } },
  { index: 1, uuid: uuids[1], name: 'NVIDIA A100-SXM4-80GB', memoryMiB: 81920, pciBusId: '00000000:0F:00.0', numaNode: 0 },
  { index: 2, uuid: uuids[2], name: 'NVIDIA A100-SXM4-80GB', memoryMiB: 81920, pciBusId: '00000000:47:00.0', numaNode: 0 },
  { index: 3, uuid: uuids[3], name: 'NVIDIA A100-SXM4-80GB', memoryMiB: 81920, pciBusId: '00000000:4E:00.0', numaNode: 1 },
];

let dir: string;
let backend: FakeBackend;

beforeEach(() => {
  mkdirSync(base, { recursive: true });
  dir = mkdtempSync(join(base, 'gpu-'));
  made.push(dir);
  writeFileSync(join(dir, 'gpus.json'), JSON.stringify(fourGpus));
  writeFileSync(join(dir, 'events'), 'xid GPU-11111111-2222-3333-4444-555555555550 31\n'); // history, not news
  backend = new FakeBackend(dir, log);
  backends.push(backend);
  warnings.length = 0;
});

afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

afterAll(() => {
  // Nothing of ours may be left, even after a failure in beforeEach.
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

const major = (rdev: number): number => (rdev >> 8) & 0xfff;
const minor = (rdev: number): number => (rdev & 0xff) | ((rdev >> 12) & 0xfff00);

function collect(): { events: HealthEvent[]; stop: () => void } {
  const events: HealthEvent[] = [];
  const stop = backend.watchHealth((e) => events.push(e));
  return { events, stop };
}

describe.runIf(isRoot)('FakeBackend discovery (device nodes, root)', () => {
  it('discover() reports every GPU of gpus.json with its device node under dir/dev', async () => {
    const gpus = await backend.discover();
    expect(gpus).toEqual(fourGpus.map(({ nvlinks: _nvlinks, ...g }) => ({ ...g, devicePath: join(dir, 'dev', `nvidia${g.index}`) })));
  });

  it('creates nvidiaN as char devices 195:N, nvidiactl 195:255 and nvidia-uvm(-tools) 235:0/1', async () => {
    await backend.discover();
    const expected: [string, number, number][] = [['nvidia0', 195, 0], ['nvidia1', 195, 1], ['nvidia2', 195, 2], ['nvidia3', 195, 3], ['nvidiactl', 195, 255], ['nvidia-uvm', 235, 0], ['nvidia-uvm-tools', 235, 1]];
    for (const [name, maj, min] of expected) {
      const st = statSync(join(dir, 'dev', name));
      expect(st.isCharacterDevice(), name).toBe(true);
      expect([major(st.rdev), minor(st.rdev)], name).toEqual([maj, min]);
    }
    expect(await backend.controlDevices()).toEqual(['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools'].map((n) => join(dir, 'dev', n)));
  });

  it('a second discover() keeps the existing nodes and replaces a wrong one', async () => {
    await backend.discover();
    const before = statSync(join(dir, 'dev', 'nvidia1')).ino;
    rmSync(join(dir, 'dev', 'nvidia2'));
    writeFileSync(join(dir, 'dev', 'nvidia2'), 'not a device');
    const again = await backend.discover();
    expect(again).toHaveLength(4);
    expect(statSync(join(dir, 'dev', 'nvidia1')).ino).toBe(before);
    const st = statSync(join(dir, 'dev', 'nvidia2'));
    expect(st.isCharacterDevice()).toBe(true);
    expect([major(st.rdev), minor(st.rdev)]).toEqual([195, 2]);
  });

  it('probe() is true for a present GPU with its node, false once it leaves gpus.json or loses its node', async () => {
    await backend.discover();
    expect(await backend.probe(uuids[0])).toBe(true);
    expect(await backend.probe('GPU-00000000-0000-0000-0000-000000000000')).toBe(false);
    rmSync(join(dir, 'dev', 'nvidia1'));
    expect(await backend.probe(uuids[1])).toBe(false);
    writeFileSync(join(dir, 'gpus.json'), JSON.stringify(fourGpus.slice(1)));
    expect(await backend.probe(uuids[0])).toBe(false);
  });

  it('probe-fail and probe-ok lines in the events file override probe()', async () => {
    await backend.discover();
    const { stop } = collect();
    appendFileSync(join(dir, 'events'), `probe-fail ${uuids[2]}\n`);
    await expect.poll(() => backend.probe(uuids[2]), { timeout: 2000 }).toBe(false);
    expect(await backend.probe(uuids[3])).toBe(true);
    appendFileSync(join(dir, 'events'), `probe-ok ${uuids[2]}\n`);
    await expect.poll(() => backend.probe(uuids[2]), { timeout: 2000 }).toBe(true);
    stop();
  });
});

describe('FakeBackend gpus.json validation', () => {
  it('rejects a GPU with a bad field, naming the file and the field', async () => {
    writeFileSync(join(dir, 'gpus.json'), JSON.stringify([fourGpus[0], { ...fourGpus[1], memoryMiB: 'lots' }]));
    const err = await backend.discover().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('invalid-config');
    expect((err as BerthError).message).toContain(join(dir, 'gpus.json'));
    expect((err as BerthError).message).toMatch(/1\.memoryMiB/);
    expect(existsSync(join(dir, 'dev'))).toBe(false);
  });

  it('rejects duplicate indexes, a missing file and invalid JSON', async () => {
    writeFileSync(join(dir, 'gpus.json'), JSON.stringify([fourGpus[0], { ...fourGpus[1], index: 0 }]));
    await expect(backend.discover()).rejects.toThrow(/1\.index: duplicate index 0/);
    writeFileSync(join(dir, 'gpus.json'), '[{');
    await expect(backend.discover()).rejects.toThrow(/gpus\.json: not valid JSON/);
    rmSync(join(dir, 'gpus.json'));
    await expect(backend.discover()).rejects.toMatchObject({ kind: 'invalid-config', message: expect.stringContaining('gpus.json') });
  });
});

describe('FakeBackend topology', () => {
  it('is nvlink where nvlinks lists the pair (either side), node on one NUMA node, sys across', async () => {
    const topo = await backend.topology();
    expect(topo.link(uuids[0], uuids[1])).toBe('nvlink');
    expect(topo.link(uuids[1], uuids[0])).toBe('nvlink');
    expect(topo.nvlinks(uuids[1], uuids[0])).toBe(12);
    expect(topo.link(uuids[0], uuids[2])).toBe('node');
    expect(topo.nvlinks(uuids[0], uuids[2])).toBe(0);
    expect(topo.link(uuids[2], uuids[3])).toBe('sys');
    expect(topo.link(uuids[0], 'GPU-unknown')).toBe('unknown');
  });
});

describe('FakeBackend health events', () => {
  it('delivers an appended xid line within 1 s, and not what the file held before', async () => {
    const { events, stop } = collect();
    await sleep(50);
    const start = performance.now();
    appendFileSync(join(dir, 'events'), `xid ${uuids[1]} 79\n`);
    await expect.poll(() => events.length, { timeout: 2000, interval: 5 }).toBe(1);
    const latency = performance.now() - start;
    expect(latency).toBeLessThan(1000);
    expect(events[0]).toMatchObject({ uuid: uuids[1], kind: 'xid', code: 79 });
    expect(events[0]?.at).toBeInstanceOf(Date);
    stop();
  });

  it('delivers ecc-dbe and ecc-sbe lines as double- and single-bit ECC events, in order', async () => {
    const { events, stop } = collect();
    appendFileSync(join(dir, 'events'), `ecc-dbe ${uuids[0]} 2\necc-sbe ${uuids[3]} 17\n`);
    await expect.poll(() => events.length, { timeout: 2000 }).toBe(2);
    expect(events.map((e) => [e.uuid, e.kind, e.code])).toEqual([[uuids[0], 'ecc-double-bit', 2], [uuids[3], 'ecc-single-bit', 17]]);
    stop();
  });

  it('skips malformed lines with a warning and keeps reading', async () => {
    const { events, stop } = collect();
    appendFileSync(join(dir, 'events'), `xid ${uuids[0]}\nreboot ${uuids[0]}\nxid ${uuids[0]} seventy-nine\nprobe-ok\n\nxid ${uuids[0]} 48\n`);
    await expect.poll(() => events.length, { timeout: 2000 }).toBe(1);
    expect(events[0]).toMatchObject({ kind: 'xid', code: 48 });
    expect(warnings).toHaveLength(4);
    expect(warnings[1]).toMatch(/unknown event "reboot"/);
    stop();
  });

  it('waits for the newline of a line written in two parts', async () => {
    const { events, stop } = collect();
    appendFileSync(join(dir, 'events'), `xid ${uuids[2]} 6`);
    await sleep(500);
    expect(events).toHaveLength(0);
    appendFileSync(join(dir, 'events'), '2\n');
    await expect.poll(() => events.length, { timeout: 2000 }).toBe(1);
    expect(events[0]).toMatchObject({ uuid: uuids[2], code: 62 });
    stop();
  });

  it('follows an events file that did not exist when watching started', async () => {
    rmSync(join(dir, 'events'));
    const { events, stop } = collect();
    await sleep(50);
    appendFileSync(join(dir, 'events'), `xid ${uuids[3]} 94\n`);
    await expect.poll(() => events.length, { timeout: 2000 }).toBe(1);
    stop();
  });

  it('delivers nothing after close() or after the returned stop function', async () => {
    const a = collect();
    const b = collect();
    a.stop();
    await backend.close();
    appendFileSync(join(dir, 'events'), `xid ${uuids[0]} 79\n`);
    await sleep(600);
    expect(a.events).toEqual([]);
    expect(b.events).toEqual([]);
  });
});
