import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CriWorld } from '../../../world/cri.js';
import { csiSkipReason } from '../../../world/csi-suite.js';
import { BerthdProcess, BerthdWorld, runBerthd } from '../../../world/berthd.js';

// berthd when things go wrong: a component that cannot start while the others serve, and that
// starts by itself once the cause is gone; a component whose code throws, contained and
// restarted in the same process; a configuration that is not valid, refused before anything
// starts; and SIGHUP turning components on and off, or refusing a broken file.

const skip = csiSkipReason();
if (skip) console.log(`skipping berthd failure tests: ${skip}`);

let world: BerthdWorld | undefined;
let berthd: BerthdProcess | undefined;

async function csiAnswers(w: BerthdWorld): Promise<void> {
  expect((await w.csi().identity.getPluginInfo()).name).toBe('local.csi.berth.io');
}

async function cnidAnswers(w: BerthdWorld, p: BerthdProcess): Promise<void> {
  const before = BerthdWorld.cnidServed(p, 'VERSION').length;
  const out = await w.cniVersion();
  expect(out.code, out.stdout + out.stderr).toBe(0);
  await expect.poll(() => BerthdWorld.cnidServed(p, 'VERSION').length).toBeGreaterThan(before);
}

function cleanupAfterEach(): void {
  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && berthd) console.log(berthd.logText().slice(-6000), berthd.stderr);
    await world?.stop();
    world = berthd = undefined;
  });
}

describe.skipIf(!!skip)('berthd: a component that cannot start', () => {
  cleanupAfterEach();

  it('gpu with a broken gpus.json: /readyz is 503 naming it while csi and cnid serve; fixed, it starts by itself', async () => {
    world = await BerthdWorld.start();
    world.writeGpus('{ not json');
    berthd = await world.berthd(world.document(['csi', 'gpu', 'cnid']));
    await berthd.waitReady('csi');
    await berthd.waitReady('cnid');
    await berthd.waitForLog('the component could not start; the others go on', 'gpu');

    const ready = await berthd.readyz();
    expect(ready.status).toBe(503);
    expect(ready.text).toMatch(/^gpu: not ready: could not start: .*gpus\.json: not valid JSON/m);
    expect(ready.text).toMatch(/^csi: ok$/m);
    expect(ready.text).toMatch(/^cnid: ok$/m);
    expect((await berthd.readyz('gpu')).status).toBe(503);
    await csiAnswers(world);
    await cnidAnswers(world, berthd);
    const metrics = await berthd.metrics();
    expect(BerthdProcess.sample(metrics, 'berthd_component_up', 'gpu')).toBe(0);
    expect(BerthdProcess.sample(metrics, 'berthd_component_start_failures_total', 'gpu')).toBeGreaterThanOrEqual(1);
    expect(BerthdProcess.sample(metrics, 'berthd_component_up', 'csi')).toBe(1);
    expect(world.kubelet.registrations).toEqual([]);

    const pid = berthd.pid;
    world.writeGpus(JSON.stringify(world.gpus));
    // restartBackoffMaxMs: 500 in the file: the next try comes within half a second.
    await berthd.waitReady(undefined, 10_000);
    await world.kubelet.waitForList('nvidia.com/gpu', (d) => d.length === world!.gpus.length);
    expect(berthd.pid).toBe(pid);
    expect(BerthdProcess.sample(await berthd.metrics(), 'berthd_component_up', 'gpu')).toBe(1);
  }, 60_000);

  it('csi with a root it cannot create: the others serve; once the path is free, csi starts by itself', async () => {
    world = await BerthdWorld.start();
    // A regular file where a directory of the root must go: mkdir fails with ENOTDIR, even as root.
    const blocker = join(world.dir, 'blocker');
    writeFileSync(blocker, 'not a directory\n');
    const doc = world.document(['csi', 'cnid']);
    doc.csi = { ...(doc.csi as object), root: join(blocker, 'root') };
    berthd = await world.berthd(doc);
    await berthd.waitReady('cnid');
    await berthd.waitForLog('the component could not start; the others go on', 'csi');
    const ready = await berthd.readyz();
    expect(ready.status).toBe(503);
    expect(ready.text).toMatch(/^csi: not ready: could not start: /m);
    expect(ready.text).toMatch(/^cnid: ok$/m);
    await cnidAnswers(world, berthd);

    rmSync(blocker);
    mkdirSync(blocker);
    await berthd.waitReady(undefined, 10_000);
    await csiAnswers(world);
    expect(BerthdProcess.sample(await berthd.metrics(), 'berthd_component_start_failures_total', 'csi')).toBeGreaterThanOrEqual(1);
  }, 60_000);
});

describe.skipIf(!!skip)('berthd: containment of a component that throws', () => {
  let cri: CriWorld;
  beforeAll(async () => {
    cri = await CriWorld.start({ berthCri: false });
  }, 120_000);
  afterAll(async () => {
    await cri?.stop();
  });
  cleanupAfterEach();

  it('BERTH_CRASH_IN=csi: csi is restarted in the same process while cri and cnid answer throughout', async () => {
    world = await BerthdWorld.start({ cri });
    berthd = await world.berthd(world.document(['cri', 'csi', 'cnid']), { BERTH_CRASH_IN: 'csi' });
    const pid = berthd.pid;
    // Calls to cri and cnid from before the crash (200 ms after "berthd running") to after csi is back.
    const w = world;
    const p = berthd;
    await p.waitForLog('berthd running');
    w.cri!.connect(w.socketOf('cri'));
    const failures: string[] = [];
    let calls = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const [v, c] = await Promise.allSettled([w.cri!.runtime.version({ version: '' }), w.cniVersion()]);
        calls++;
        if (v.status === 'rejected') failures.push(`cri: ${(v.reason as Error).message}`);
        if (c.status === 'rejected' || c.value.code !== 0) failures.push(`cnid: ${c.status === 'rejected' ? String(c.reason) : c.value.stdout}`);
        await sleep(20);
      }
    })();
    try {
      const crash = await p.waitForLog('the component failed; restarting it, the others go on', 'csi');
      expect(crash.err).toBe('crash injected into csi (BERTH_CRASH_IN)');
      await expect.poll(async () => BerthdProcess.sample(await p.metrics(), 'berthd_component_restarts_total', 'csi'), { timeout: 10_000 }).toBe(1);
      await p.waitReady(undefined, 10_000);
      await csiAnswers(w);
    } finally {
      polling = false;
      await poller;
    }
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(p.running).toBe(true);
    expect(p.pid).toBe(pid);
    expect(p.lines('the component failed; restarting it, the others go on')).toHaveLength(1);
    const metrics = await p.metrics();
    expect(BerthdProcess.sample(metrics, 'berthd_component_restarts_total', 'cri')).toBe(0);
    expect(BerthdProcess.sample(metrics, 'berthd_component_restarts_total', 'cnid')).toBe(0);
    // cnid served those calls itself (the shims did not fall back to a standalone run).
    await expect.poll(() => BerthdWorld.cnidServed(p, 'VERSION').length).toBe(calls);
  }, 60_000);
});

describe.skipIf(!!skip)('berthd: configuration errors', () => {
  cleanupAfterEach();

  /** berthd run on `doc` (valid csi and cnid sections next to the broken one) to its end. */
  function runOn(doc: Record<string, unknown>, args: string[] = []): ReturnType<typeof runBerthd> {
    world!.writeGpus(JSON.stringify(world!.gpus));
    writeFileSync(world!.configFile, JSON.stringify(doc));
    return runBerthd(['--config', world!.configFile, '--http', '127.0.0.1:0', ...args], { BERTH_CNI_SOCKET: world!.cnidSocket });
  }

  /** Exit 1, the message on stderr, and nothing started: no log line, no socket, no CSI root. */
  function expectRefused(outcome: ReturnType<typeof runBerthd>, message: RegExp): void {
    expect(outcome.code, outcome.stdout + outcome.stderr).toBe(1);
    expect(outcome.stderr).toMatch(/^berthd: /);
    expect(outcome.stderr).toMatch(message);
    expect(outcome.stdout).toBe('');
    for (const path of [world!.csiSocket, world!.cnidSocket, world!.csiRoot]) expect(existsSync(path), path).toBe(false);
  }

  it('a bad value in a section exits 1 naming section.key before anything starts', async () => {
    world = await BerthdWorld.start();
    const base = world.document(['csi', 'cnid']);
    const csi = base.csi as Record<string, unknown>;
    expectRefused(runOn({ ...base, csi: { ...csi, nodeId: 'not a node!' } }), /csi\.nodeId: must be a node name/);
    expectRefused(runOn({ ...base, cri: { listen: '' } }), /cri\.listen: /);
    expectRefused(runOn({ ...base, gpu: { backend: 'quantum' } }), /gpu\.backend: /);
    expectRefused(runOn({ ...base, csi: { ...csi, nodeId: undefined } }), /csi\.nodeId is required/);
    expectRefused(runOn({ ...base, overlay: { leaseStore: 'file' } }), /overlay\.networkConfig: required with the file lease store/);
    // A disabled section is validated too: the typo is found before the day it is turned on.
    expectRefused(runOn({ ...base, gpu: { enabled: false, backend: 'quantum' } }), /gpu\.backend: /);
    // An unknown key is named with its section.
    expectRefused(runOn({ ...base, csi: { ...csi, nodeID: 'x' } }), /csi\.nodeID: unknown setting/);
    expectRefused(runOn({ ...base, cnid: { socket: 'relative.sock' } }), /cnid\.socket: must be an absolute path/);
  });

  it('an unknown flag, and a file that enables no component, exit 1', async () => {
    world = await BerthdWorld.start();
    expectRefused(runOn(world.document(['csi', 'cnid']), ['--bogus', 'x']), /unknown flag --bogus/);
    expectRefused(runOn({ logLevel: 'info' }), /no component is enabled/);
    expectRefused(runOn({ csi: { ...world.section('csi'), enabled: false } }), /no component is enabled/);
    expectRefused(runOn(world.document(['csi']), ['--disable', 'csi']), /no component is enabled/);
  });
});

describe.skipIf(!!skip)('berthd: SIGHUP', () => {
  cleanupAfterEach();

  it('a section added starts that component; removed, it stops and its socket goes; an invalid file changes nothing', async () => {
    world = await BerthdWorld.start();
    const w = world;
    berthd = await w.berthd(w.document(['csi', 'cnid']));
    const p = berthd;
    await p.waitReady();
    const pid = p.pid;
    expect((await p.readyz('gpu')).status).toBe(404);
    expect(existsSync(w.socketOf('gpu'))).toBe(false);

    p.writeConfig(w.document(['csi', 'gpu', 'cnid']));
    await p.reload();
    await p.waitReady('gpu', 15_000);
    await w.kubelet.waitForList('nvidia.com/gpu', (d) => d.length === w.gpus.length);
    expect(existsSync(w.socketOf('gpu'))).toBe(true);
    expect((await p.readyz()).text.trim().split('\n').sort()).toEqual(['cnid: ok', 'csi: ok', 'gpu: ok']);

    p.writeConfig(w.document(['csi', 'cnid']));
    await p.reload();
    await expect.poll(async () => (await p.readyz('gpu')).status, { timeout: 10_000 }).toBe(404);
    await expect.poll(() => existsSync(w.socketOf('gpu')), { timeout: 10_000 }).toBe(false);
    expect(p.lines('turned off in the configuration; stopping it', 'gpu')).toHaveLength(1);
    expect(BerthdProcess.sample(await p.metrics(), 'berthd_component_up', 'gpu')).toBeUndefined();
    await p.waitReady();

    const doc = w.document(['csi', 'cnid']);
    p.writeConfig({ ...doc, csi: { ...(doc.csi as object), nodeId: 'not a node!' } });
    await p.reload();
    const refused = await p.waitForLog('SIGHUP: the configuration is not valid; keeping the running one');
    expect(refused.err).toMatch(/csi\.nodeId/);
    expect((await p.readyz()).status).toBe(200);
    await csiAnswers(w);
    expect((await w.csi().node.nodeGetInfo()).nodeId).toBe('berthd-node');
    await cnidAnswers(w, p);
    expect(p.pid).toBe(pid);
    expect(p.running).toBe(true);
    expect(p.lines(/could not start|the component failed/)).toEqual([]);
  }, 60_000);
});
