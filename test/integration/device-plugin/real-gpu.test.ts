import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { NvidiaSmiBackend } from '../../../device-plugin/backend/nvidia-smi.js';
import { NvmlBackend } from '../../../device-plugin/backend/nvml.js';

// The real backends on a real GPU. There is none on the machines berth is built and tested on,
// so these skip there, saying so; on a node with an NVIDIA GPU and driver they check that both
// backends see the same GPUs.

function gpuReason(): string | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return /GPU \d+:/.test(out) ? undefined : 'nvidia-smi lists no GPU';
  } catch {
    return 'no GPU on this machine (nvidia-smi is missing or fails)';
  }
}
const reason = gpuReason();
if (reason) console.log(`skipping the real-GPU backend tests: ${reason}`);

describe.skipIf(reason !== undefined)('berth-gpu backends on a real GPU', () => {
  it('nvidia-smi and nvml discover the same GPUs, and each answers its probe', async () => {
    const smi = new NvidiaSmiBackend();
    const nvml = new NvmlBackend();
    try {
      const a = await smi.discover();
      const b = await nvml.discover();
      expect(a.length).toBeGreaterThan(0);
      expect(b.map((g) => g.uuid).sort()).toEqual(a.map((g) => g.uuid).sort());
      for (const g of a) expect(await nvml.probe(g.uuid)).toBe(true);
    } finally {
      await smi.close();
      await nvml.close();
    }
  });
});
