import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CriWorld, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { BerthdWorld, type BerthdProcess, type LogLine } from '../../world/berthd.js';
import { isRoot } from '../../world/netns.js';
import { DaemonUnderTest } from '../integration/cni-plugins/cnid/daemon.js';

// A pod's network as berth-cri sets it up with berth's own plugins: through berth-cnid's socket
// when a cnid of the plugins' build answers there (no plugin process started), in-process when
// berthd hosts the CRI and cnid together, and by executing the plugins when neither is there.

let world: CriWorld;
let cnid: DaemonUnderTest | undefined;
let berthdWorld: BerthdWorld | undefined;

/** berth-cri's debug log: each CNI plugin call and the path it took. */
function pluginCalls(lines: LogLine[]): LogLine[] {
  return lines.filter((l) => l.msg === 'cni plugin call');
}

function criLogLines(): LogLine[] {
  return readFileSync(world.cri.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** Run a pod, check it got an address, stop and remove it; the calls berth-cri logged meanwhile. */
async function podLifecycle(runtime: CriWorld['runtime'], name: string, log: () => LogLine[]): Promise<LogLine[]> {
  const before = log().length;
  const config = podSandboxConfig(world, name);
  const { podSandboxId } = await runtime.runPodSandbox({ config, runtimeHandler: '' });
  const { status } = await runtime.podSandboxStatus({ podSandboxId, verbose: false });
  expect(status?.network?.ip).toMatch(/^10\.\d+\.\d+\.\d+$/);
  await runtime.stopPodSandbox({ podSandboxId });
  await runtime.removePodSandbox({ podSandboxId });
  return pluginCalls(log().slice(before));
}

const summary = (calls: LogLine[]) => calls.map((c) => `${String(c.command)} ${String(c.plugin)} ${String(c.via)}`);

describe.skipIf(!isRoot)("berth-cri's CNI calls: berth-cnid, in-process, or exec", () => {
  beforeAll(async () => {
    world = await CriWorld.start();
    await world.images.pullImage({ image: imageSpec(world.image('pause')), auth: undefined, sandboxConfig: undefined });
  }, 120_000);

  afterAll(async () => {
    await berthdWorld?.stop();
    await cnid?.stop();
    await world?.stop();
  }, 60_000);

  it('without berth-cnid the plugins are executed, and the pod still gets its network', async () => {
    const calls = await podLifecycle(world.runtime, 'noncnid', criLogLines);
    expect(summary(calls.filter((c) => c.command === 'ADD'))).toEqual(['ADD berth-bridge exec', 'ADD berth-portmap exec']);
    expect(calls.filter((c) => c.command === 'DEL').every((c) => c.via === 'exec')).toBe(true);
  }, 60_000);

  it('with berth-cnid running, ADD and DEL go over its socket and no plugin process is started', async () => {
    cnid = await DaemonUnderTest.start(join(world.dir, 'cni.sock'));
    await world.killCri();
    world.cnidSocket = cnid.socket;
    await world.startCri();
    const calls = await podLifecycle(world.runtime, 'viacnid', criLogLines);
    expect(summary(calls)).toEqual(['ADD berth-bridge cnid', 'ADD berth-portmap cnid', 'DEL berth-portmap cnid', 'DEL berth-bridge cnid']);
    // The daemon's own log shows it ran them.
    const served = cnid.log.filter((l) => l.msg === 'request done').map((l) => `${String(l.command)} ${String(l.plugin)}`);
    expect(served).toEqual(['ADD berth-bridge', 'ADD berth-portmap', 'DEL berth-portmap', 'DEL berth-bridge']);
    expect(cnid.log.filter((l) => l.msg === 'request done').every((l) => l.exitCode === 0)).toBe(true);
  }, 60_000);

  it('berthd hosting the CRI and cnid calls the plugins in-process', async () => {
    await world.killCri();
    berthdWorld = await BerthdWorld.start({ cri: world });
    const berthd: BerthdProcess = await berthdWorld.berthd(berthdWorld.document(['cri', 'cnid']));
    await berthd.waitReady('cri');
    world.connect(berthdWorld.socketOf('cri'));
    const calls = await podLifecycle(world.runtime, 'inproc', () => berthd.thisRun());
    expect(summary(calls)).toEqual(['ADD berth-bridge in-process', 'ADD berth-portmap in-process', 'DEL berth-portmap in-process', 'DEL berth-bridge in-process']);
    const served = BerthdWorld.cnidServed(berthd, 'ADD').filter((l) => l.via === 'in-process').map((l) => l.plugin);
    expect(served).toEqual(expect.arrayContaining(['berth-bridge', 'berth-portmap']));
    // berthd's /metrics counts them.
    const metrics = await (await fetch(`http://127.0.0.1:${berthd.port}/metrics`)).text();
    expect(metrics).toMatch(/berth_cnid_requests_total\{via="in-process"\} [1-9]/);
  }, 90_000);
});
