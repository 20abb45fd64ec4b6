import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { componentNames, type ComponentName } from '../../../lib/component.js';
import { repoRoot } from '../../../world/cni.js';
import { CriWorld } from '../../../world/cri.js';
import { csiSkipReason } from '../../../world/csi-suite.js';
import { BerthdProcess, BerthdWorld } from '../../../world/berthd.js';

// berthd with each combination of components that matters, in the e2e world: every enabled
// component answers a real call on its usual socket, /readyz and /metrics name exactly the
// enabled ones, and a disabled component leaves no socket (nor, in the bundle, loaded code).

const skip = csiSkipReason();
if (skip) console.log(`skipping berthd combination tests: ${skip}`);

let cri: CriWorld;
let world: BerthdWorld | undefined;
let berthd: BerthdProcess | undefined;

/** What each component answers when it is enabled; each throws (or fails an expect) when it does not. */
const answers: Record<ComponentName, (w: BerthdWorld, p: BerthdProcess) => Promise<void>> = {
  async cri(w) {
    w.cri!.connect(w.socketOf('cri'));
    const v = await w.cri!.runtime.version({ version: '' });
    expect(v.runtimeName).toBe('berth');
    expect(v.runtimeApiVersion).toBe('v1');
  },
  async csi(w) {
    const c = w.csi();
    expect((await c.identity.getPluginInfo()).name).toBe('local.csi.berth.io');
    expect((await c.node.nodeGetInfo()).nodeId).toBe('berthd-node');
  },
  async gpu(w) {
    await w.kubelet.waitForRegistrations(1);
    const list = await w.kubelet.waitForList('nvidia.com/gpu', (d) => d.length === w.gpus.length);
    expect(list.devices.map((d) => d.ID).sort()).toEqual(w.gpus.map((g) => g.uuid).sort());
    expect(list.devices.every((d) => d.health === 'Healthy')).toBe(true);
  },
  async overlay(w) {
    const env = readFileSync(w.overlay.subnetFile, 'utf8');
    expect(env).toContain(`BERTH_NETWORK=${w.overlay.network}`);
    expect(env).toMatch(/^BERTH_SUBNET=10\.\d+\.\d+\.1\/24$/m);
  },
  async cnid(w, p) {
    const before = BerthdWorld.cnidServed(p, 'VERSION').length;
    const out = await w.cniVersion();
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(out.json?.supportedVersions).toContain('1.1.0');
    // The shim handed the call to berthd's cnid rather than running the plugin itself.
    await expect.poll(() => BerthdWorld.cnidServed(p, 'VERSION').length).toBe(before + 1);
  },
};

async function expectServing(enabled: readonly ComponentName[]): Promise<void> {
  const w = world!;
  berthd = await w.berthd(w.document(enabled));
  await berthd.waitReady();
  for (const name of enabled) await answers[name](w, berthd);

  const ready = await berthd.readyz();
  expect(ready.status).toBe(200);
  expect(ready.text.trim().split('\n').sort()).toEqual(enabled.map((n) => `${n}: ok`).sort());
  for (const name of componentNames) {
    expect((await berthd.readyz(name)).status, `/readyz/${name}`).toBe(enabled.includes(name) ? 200 : 404);
    if (!enabled.includes(name)) expect(existsSync(w.socketOf(name)), `${name}'s socket`).toBe(false);
  }
  const metrics = await berthd.metrics();
  for (const name of componentNames) {
    expect(BerthdProcess.sample(metrics, 'berthd_component_up', name), `berthd_component_up{component="${name}"}`).toBe(enabled.includes(name) ? 1 : undefined);
  }
  expect(BerthdProcess.sample(metrics, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  // berth-cri's own counters come out through berthd's endpoint, counting the call made above.
  if (enabled.includes('cri')) expect(metrics).toMatch(/^berth_cri_grpc_requests_total\{method="\w+",code="OK"\} [1-9]/m);
  // Nothing here may have crashed or restarted on the way.
  expect(berthd.lines(/could not start|the component failed/)).toEqual([]);
}

describe.skipIf(!!skip)('berthd: combinations of components', () => {
  beforeAll(async () => {
    cri = await CriWorld.start({ berthCri: false });
  }, 120_000);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && berthd) console.log(berthd.logText().slice(-6000), berthd.stderr);
    if (berthd?.running && world?.cri) {
      world.cri.connect(world.socketOf('cri'));
      await world.cri.removeAllPods().catch(() => undefined);
    }
    await world?.stop();
    world = berthd = undefined;
  });

  afterAll(async () => {
    await cri?.stop();
  });

  it('all five components: each answers on its socket, /readyz and /metrics list all five', async () => {
    world = await BerthdWorld.start({ cri });
    await expectServing(['cri', 'csi', 'gpu', 'overlay', 'cnid']);
  }, 60_000);

  it('cri only: the CRI answers; no CSI, GPU or CNI socket, no subnet file', async () => {
    world = await BerthdWorld.start({ cri });
    await expectServing(['cri']);
  }, 60_000);

  it('csi only: the CSI answers; nothing else is served', async () => {
    world = await BerthdWorld.start();
    await expectServing(['csi']);
  }, 60_000);

  it('gpu only: the device plugin registers with kubelet and lists the fake GPUs; nothing else is served', async () => {
    world = await BerthdWorld.start();
    await expectServing(['gpu']);
  }, 60_000);
});

/** The chunk files a module imports statically (import/export ... from "./x.mjs", import "./x.mjs"), recursively. */
function staticClosure(dir: string, entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(join(dir, file), 'utf8');
    // `import(` (dynamic) never matches: a static import has a space, a brace or a quote after the keyword.
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s*(?:[\w$*{},\s]*?\sfrom\s*)?["'](\.\/[^"']+)["']/g)) visit(m[1]!.slice(2));
  };
  visit(entry);
  return seen;
}

describe('berthd bundle', () => {
  const dir = join(repoRoot, 'dist/berthd');
  const chunks = () => readdirSync(dir).filter((f) => f.endsWith('.mjs'));
  const holding = (needle: string): string[] => chunks().filter((f) => readFileSync(join(dir, f), 'utf8').includes(needle));

  it('loads the GPU and the overlay (and etcd) code only through dynamic imports', () => {
    const reachable = staticClosure(dir, 'berthd.mjs');
    // The closure is real: the entry's static imports (config parsing, logging) are in it.
    expect(reachable.size).toBeGreaterThan(3);
    const lazy = {
      gpu: holding('berth-gpu running'),
      overlay: holding('berth-overlayd running'),
      etcdStore: holding('EtcdLeaseStore = class'),
      etcdClient: holding('etcd3/lib/'),
    };
    for (const [what, files] of Object.entries(lazy)) {
      expect(files.length, `a chunk holding the ${what} code`).toBeGreaterThan(0);
      for (const f of files) expect(reachable.has(f), `${f} (${what}) is imported statically from berthd.mjs`).toBe(false);
    }
    // And each is reachable from the entry by a dynamic import() somewhere.
    const entry = readFileSync(join(dir, 'berthd.mjs'), 'utf8');
    expect(entry).toMatch(/import\("\.\/component-[^"]+\.mjs"\)/);
  });
});
