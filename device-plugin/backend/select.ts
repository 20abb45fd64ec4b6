import { BerthError } from '../../lib/errors.js';
import type { GpuConfig } from '../config.js';
import { FakeBackend, type BackendLog } from './fake.js';
import { NvidiaSmiBackend } from './nvidia-smi.js';
import { NvmlBackend } from './nvml.js';
import type { GpuBackend } from './types.js';

// Pick the hardware backend from the config. 'auto' prefers NVML, then nvidia-smi, then the
// fake directory (only when fakeDir is set), and logs why each earlier choice was skipped.

export async function selectBackend(config: GpuConfig, log: BackendLog): Promise<GpuBackend> {
  switch (config.backend) {
    case 'fake':
      if (!config.fakeDir) throw new BerthError('invalid-config', 'fakeDir is required with backend fake (--fake-dir DIR)');
      return new FakeBackend(config.fakeDir, log);
    case 'nvml':
      return await usable(new NvmlBackend({ log }));
    case 'nvidia-smi':
      return await usable(new NvidiaSmiBackend({ log }));
    case 'auto':
      return await autoSelect(config, log);
  }
}

async function autoSelect(config: GpuConfig, log: BackendLog): Promise<GpuBackend> {
  const skipped: string[] = [];
  const skip = (name: string, why: string): void => {
    skipped.push(`${name}: ${why}`);
    log.info(`gpu backend ${name} skipped: ${why}`);
  };
  try {
    const backend = await usable(new NvmlBackend({ log }));
    log.info('gpu backend: nvml');
    return backend;
  } catch (err) {
    skip('nvml', (err as Error).message);
  }
  try {
    const backend = await usable(new NvidiaSmiBackend({ log }));
    log.info('gpu backend: nvidia-smi');
    return backend;
  } catch (err) {
    skip('nvidia-smi', (err as Error).message);
  }
  if (config.fakeDir) {
    try {
      const backend = await usable(new FakeBackend(config.fakeDir, log));
      log.info(`gpu backend: fake (${config.fakeDir})`);
      return backend;
    } catch (err) {
      skip('fake', (err as Error).message);
    }
  } else {
    skip('fake', 'fakeDir is not set');
  }
  throw new BerthError('not-available', `no GPU backend works here: ${skipped.join('; ')}`);
}

/** A backend whose discover() works; otherwise its error, after closing it. */
async function usable(backend: GpuBackend): Promise<GpuBackend> {
  try {
    await backend.discover();
    return backend;
  } catch (err) {
    await backend.close();
    throw err;
  }
}
