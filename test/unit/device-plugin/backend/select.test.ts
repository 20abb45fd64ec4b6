import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { selectBackend } from '../../../../device-plugin/backend/select.js';
import { parseConfig } from '../../../../device-plugin/config.js';

const hostHasNvidiaSmi = (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, 'nvidia-smi')));

describe.skipIf(hostHasNvidiaSmi)('selectBackend (on a host without nvidia-smi)', () => {
  const infos: string[] = [];
  const log = { info: (m: string) => void infos.push(m), warn: () => {} };
  const fakeDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'berth-gpu-select-'));
    writeFileSync(join(d, 'gpus.json'), '[]');
    return d;
  };
  afterEach(() => {
    infos.length = 0;
  });

  it.skipIf(process.env.BERTH_NVML_LIBRARY)('nvml is not-available without libnvidia-ml, naming the library', async () => {
    await expect(selectBackend(parseConfig({ backend: 'nvml' }), log)).rejects.toMatchObject({ kind: 'not-available', message: expect.stringMatching(/^nvml: .*libnvidia-ml\.so\.1/) });
  });

  it('nvidia-smi is not-available with its error', async () => {
    await expect(selectBackend(parseConfig({ backend: 'nvidia-smi' }), log)).rejects.toMatchObject({ kind: 'not-available', message: expect.stringMatching(/^nvidia-smi: /) });
  });

  it('fake gives the fake backend on fakeDir', async () => {
    const d = fakeDir();
    try {
      const b = await selectBackend(parseConfig({ backend: 'fake', fakeDir: d }), log);
      expect(b.name).toBe('fake');
      await b.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  // The fake backend's discover() makes device nodes, which needs root (CAP_MKNOD).
  it.runIf(process.getuid?.() === 0)('auto falls back to the fake backend, logging why nvml and nvidia-smi were skipped', async () => {
    const d = fakeDir();
    try {
      const b = await selectBackend(parseConfig({ fakeDir: d }), log);
      expect(b.name).toBe('fake');
      await b.close();
      expect(infos).toEqual([expect.stringMatching(/nvml skipped/), expect.stringMatching(/nvidia-smi skipped: nvidia-smi: /), `gpu backend: fake (${d})`]);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('auto without fakeDir is not-available, listing why each backend failed', async () => {
    const err = await selectBackend(parseConfig({}), log).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'not-available' });
    expect((err as Error).message).toMatch(/nvml: .*; nvidia-smi: .*; fake: fakeDir is not set/);
  });
});
