import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import { NvmlBackend } from '../../../../device-plugin/backend/nvml.js';
import { selectBackend } from '../../../../device-plugin/backend/select.js';
import type { HealthEvent } from '../../../../device-plugin/backend/types.js';
import { parseConfig } from '../../../../device-plugin/config.js';
import { isRoot } from '../../../../world/netns.js';

// The NVML backend's native path for real, without a GPU: the test compiles a small fake
// libnvidia-ml.so.1 that implements the entry points the addon dlopens, with two canned GPUs.
// Its nvmlEventSetWait_v2 returns one Xid 79 on GPU 1 after the test creates <dir>/fire, and it
// logs nvmlInit_v2/nvmlShutdown calls to <dir>/calls. NVML state is per process, so the tests
// run in order in one describe and each opens and closes what it uses.

const base = isRoot ? '/var/lib/berth-test' : tmpdir();
const uuids = ['GPU-aaaaaaaa-0000-1111-2222-333333333330', 'GPU-aaaaaaaa-0000-1111-2222-333333333331'] as const;

function hasCompiler(): boolean {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const cc = hasCompiler();
if (!cc) console.log('skipping the NVML backend tests: no C compiler (cc) to build the fake libnvidia-ml.so.1');

function fakeNvmlSource(dir: string): string {
  return String.raw`
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct { int index; } device_t;
typedef struct { unsigned long long total, free, used; } memory_t;
typedef struct { char busIdLegacy[16]; unsigned int domain, bus, device, pciDeviceId, pciSubSystemId; char busId[32]; } pci_t;
typedef struct { device_t *device; unsigned long long eventType, eventData; unsigned int gpuInstanceId, computeInstanceId; } event_t;

static device_t devices[2] = {{0}, {1}};
static const char *uuids[2] = {"${uuids[0]}", "${uuids[1]}"};
static const char *buses[2] = {"00000000:3B:00.0", "00000000:AF:00.0"};
static int sets;

static void note(const char *call) {
  FILE *f = fopen("${dir}/calls", "a");
  if (f) { fprintf(f, "%s\n", call); fclose(f); }
}
static int copy(char *out, unsigned int size, const char *s) {
  if (strlen(s) + 1 > size) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
  strcpy(out, s);
  return 0;
}

int nvmlInit_v2(void) { note("init"); return 0; }
int nvmlShutdown(void) { note("shutdown"); return 0; }
const char *nvmlErrorString(int r) { return r == 10 ? "Timeout" : r == 3 ? "Not Supported" : "Unknown Error"; }
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, device_t **d) { if (i > 1) return 2; *d = &devices[i]; return 0; }
int nvmlDeviceGetHandleByUUID(const char *u, device_t **d) {
  for (int i = 0; i < 2; i++) if (strcmp(u, uuids[i]) == 0) { *d = &devices[i]; return 0; }
  return 6; /* NVML_ERROR_NOT_FOUND */
}
int nvmlDeviceGetUUID(device_t *d, char *out, unsigned int size) { return copy(out, size, uuids[d->index]); }
int nvmlDeviceGetName(device_t *d, char *out, unsigned int size) { (void)d; return copy(out, size, "NVIDIA A100-PCIE-40GB"); }
int nvmlDeviceGetMemoryInfo(device_t *d, memory_t *m) { (void)d; m->total = 40960ULL << 20; m->used = 0; m->free = m->total; return 0; }
int nvmlDeviceGetPciInfo_v3(device_t *d, pci_t *p) { memset(p, 0, sizeof *p); return copy(p->busId, sizeof p->busId, buses[d->index]); }
int nvmlEventSetCreate(void **set) { *set = &sets; return 0; }
int nvmlEventSetFree(void *set) { (void)set; note("free"); return 0; }
/* GPU 0 has no single-bit ECC events, as some boards lack them. */
int nvmlDeviceRegisterEvents(device_t *d, unsigned long long types, void *set) {
  (void)set;
  return d->index == 0 && types == 0x1 ? 3 : 0;
}
int nvmlEventSetWait_v2(void *set, event_t *e, unsigned int ms) {
  (void)set;
  if (unlink("${dir}/fire") == 0) {
    memset(e, 0, sizeof *e);
    e->device = &devices[1];
    e->eventType = 0x8;
    e->eventData = 79;
    return 0;
  }
  usleep((ms < 100 ? ms : 100) * 1000);
  return 10; /* NVML_ERROR_TIMEOUT */
}
`;
}

describe.runIf(cc)('NVML backend over a fake libnvidia-ml.so.1', () => {
  let dir = '';
  let library = '';
  const calls = (): string[] => (existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') : []);

  beforeAll(() => {
    mkdirSync(base, { recursive: true });
    dir = mkdtempSync(join(base, 'nvml-'));
    writeFileSync(join(dir, 'fake-nvml.c'), fakeNvmlSource(dir));
    library = join(dir, 'libnvidia-ml.so.1');
    execFileSync('cc', ['-shared', '-fPIC', '-Wall', '-Wextra', '-Werror', '-o', library, join(dir, 'fake-nvml.c')], { stdio: 'pipe' });
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('discover() returns both GPUs from NVML, with their device nodes', async () => {
    const backend = new NvmlBackend({ library, sysRoot: dir });
    try {
      const gpus = await backend.discover();
      expect(gpus).toEqual([
        { index: 0, uuid: uuids[0], name: 'NVIDIA A100-PCIE-40GB', memoryMiB: 40960, pciBusId: '00000000:3B:00.0', numaNode: -1, devicePath: '/dev/nvidia0' },
        { index: 1, uuid: uuids[1], name: 'NVIDIA A100-PCIE-40GB', memoryMiB: 40960, pciBusId: '00000000:AF:00.0', numaNode: -1, devicePath: '/dev/nvidia1' },
      ]);
      // A second discover() reuses the open library.
      expect(await backend.discover()).toHaveLength(2);
    } finally {
      await backend.close();
    }
    expect(calls()).toEqual(['init', 'shutdown']);
  });

  it('discover() reads the NUMA node of each GPU from sysfs', async () => {
    const device = join(dir, 'bus/pci/devices/0000:af:00.0');
    mkdirSync(device, { recursive: true });
    writeFileSync(join(device, 'numa_node'), '1\n');
    const backend = new NvmlBackend({ library, sysRoot: dir });
    try {
      expect((await backend.discover()).map((g) => g.numaNode)).toEqual([-1, 1]);
    } finally {
      await backend.close();
      rmSync(join(dir, 'bus'), { recursive: true, force: true });
    }
  });

  it('probe() is true for a GPU NVML knows and false for any other', async () => {
    const backend = new NvmlBackend({ library });
    try {
      expect(await backend.probe(uuids[1])).toBe(true);
      expect(await backend.probe('GPU-ffffffff-0000-0000-0000-000000000000')).toBe(false);
    } finally {
      await backend.close();
    }
  });

  it('watchHealth() delivers an Xid from the NVML event thread, and close() stops the thread', async () => {
    const backend = new NvmlBackend({ library });
    const events: HealthEvent[] = [];
    try {
      await backend.discover();
      backend.watchHealth((e) => events.push(e));
      await sleep(300);
      expect(events).toEqual([]);
      writeFileSync(join(dir, 'fire'), '');
      await expect.poll(() => events.length, { timeout: 2000, interval: 50 }).toBe(1);
      expect(events[0]).toMatchObject({ uuid: uuids[1], kind: 'xid', code: 79 });
      expect(events[0]!.at).toBeInstanceOf(Date);
    } finally {
      await backend.close();
    }
    expect(calls().slice(-2)).toEqual(['free', 'shutdown']);
    // No thread waits any more: a new fire file stays, and nothing is delivered.
    writeFileSync(join(dir, 'fire'), '');
    await sleep(500);
    expect(existsSync(join(dir, 'fire'))).toBe(true);
    expect(events).toHaveLength(1);
    rmSync(join(dir, 'fire'));
  });

  it('the function watchHealth() returns stops events while NVML stays open', async () => {
    const backend = new NvmlBackend({ library });
    const events: HealthEvent[] = [];
    try {
      const stop = backend.watchHealth((e) => events.push(e));
      stop();
      stop(); // twice is fine
      expect(calls().at(-1)).toBe('free');
      writeFileSync(join(dir, 'fire'), '');
      await sleep(300);
      expect(existsSync(join(dir, 'fire'))).toBe(true);
      rmSync(join(dir, 'fire'));
      expect(await backend.probe(uuids[0])).toBe(true);
      // And watching again works.
      backend.watchHealth((e) => events.push(e));
      writeFileSync(join(dir, 'fire'), '');
      await expect.poll(() => events.length, { timeout: 2000, interval: 50 }).toBe(1);
    } finally {
      await backend.close();
    }
  });

  it('a missing library is not-available, naming its path', async () => {
    const missing = join(dir, 'absent/libnvidia-ml.so.1');
    const backend = new NvmlBackend({ library: missing });
    const err = await backend.discover().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(err).toMatchObject({ kind: 'not-available', message: expect.stringContaining(`nvml: ${missing}: cannot open shared object file`) });
    expect(await backend.probe(uuids[0])).toBe(false);
    await backend.close();
  });

  it('a library without the NVML entry points is not-available, naming the missing symbol', async () => {
    const other = join(dir, 'libother.so');
    writeFileSync(join(dir, 'other.c'), 'int other(void) { return 0; }\n');
    execFileSync('cc', ['-shared', '-fPIC', '-o', other, join(dir, 'other.c')], { stdio: 'pipe' });
    const err = await new NvmlBackend({ library: other }).discover().catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'not-available', message: `nvml: ${other} has no symbol nvmlInit_v2 (a driver too old for this NVML ABI?)` });
  });

  it('selectBackend with backend nvml uses BERTH_NVML_LIBRARY', async () => {
    const before = process.env.BERTH_NVML_LIBRARY;
    process.env.BERTH_NVML_LIBRARY = library;
    const infos: string[] = [];
    try {
      const backend = await selectBackend(parseConfig({ backend: 'nvml' }), { info: (m) => void infos.push(m), warn: () => {} });
      try {
        expect(backend.name).toBe('nvml');
        expect((await backend.discover()).map((g) => g.uuid)).toEqual([...uuids]);
        expect(await backend.topology()).toBeDefined();
        expect((await backend.topology()).link(uuids[0], uuids[1])).toMatch(/^(unknown|nvlink|pix|pxb|phb|node|sys)$/);
      } finally {
        await backend.close();
      }
    } finally {
      if (before === undefined) delete process.env.BERTH_NVML_LIBRARY;
      else process.env.BERTH_NVML_LIBRARY = before;
    }
  });

  it('auto picks nvml first when the library loads', async () => {
    const before = process.env.BERTH_NVML_LIBRARY;
    process.env.BERTH_NVML_LIBRARY = library;
    const infos: string[] = [];
    try {
      const backend = await selectBackend(parseConfig({}), { info: (m) => void infos.push(m), warn: () => {} });
      await backend.close();
      expect(backend.name).toBe('nvml');
      expect(infos).toEqual(['gpu backend: nvml']);
    } finally {
      if (before === undefined) delete process.env.BERTH_NVML_LIBRARY;
      else process.env.BERTH_NVML_LIBRARY = before;
    }
  });

  it('every open was matched by a close: NVML was shut down as often as it was initialised', () => {
    const all = calls();
    expect(all.filter((c) => c === 'init').length).toBe(all.filter((c) => c === 'shutdown').length);
  });
});
