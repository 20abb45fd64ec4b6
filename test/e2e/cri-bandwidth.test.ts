import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ifbName } from '../../cni-plugins/bandwidth/plan.js';
import { containerConfig, podSandboxConfig, type CriWorld } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { isRoot, linkExists } from '../../world/netns.js';

// A pod's kubernetes.io/ingress-bandwidth and egress-bandwidth annotations, as kubelet sends
// them, through berth-cri to berth-bandwidth chained in the network (as berth install chains it):
// iperf3 in the pod's network namespace measures the limits, and removing the pod removes the
// shaping. A bad annotation is refused before anything is made.

const iperf3 = '/usr/bin/iperf3';
const haveIperf = existsSync(iperf3);
if (isRoot && !haveIperf) console.log(`skipping the berth-cri bandwidth e2e test: ${iperf3} is not installed (bootstrap installs it)`);

let world: CriWorld;

function run(cmd: string, args: string[], timeoutMs: number, onStdout?: (text: string) => void): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      onStdout?.(stdout);
    });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code: code ?? 128, stdout, stderr }));
  });
}

/** Receiver-side bits/s of a 4 s TCP run (after a first second left out) between the host and an iperf3 server in the pod's namespace. */
async function measure(netns: string, ip: string, port: number, reverse: boolean): Promise<number> {
  let listening!: () => void;
  const ready = new Promise<void>((r) => (listening = r));
  const server = run('nsenter', [`--net=${netns}`, iperf3, '-s', '-1', '--forceflush', '-p', String(port)], 30_000, (out) => {
    if (out.includes('Server listening')) listening();
  });
  await Promise.race([ready, server.then((r) => { throw new Error(`iperf3 -s exited: ${r.stdout} ${r.stderr}`); })]);
  const r = await run(iperf3, ['-c', ip, '-p', String(port), '-t', '4', '-O', '1', '-J', ...(reverse ? ['-R'] : [])], 20_000);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  await server;
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
}

describe.skipIf(!isRoot)('berth-cri bandwidth annotations', () => {
  useCriWorld(['busybox'], (w) => (world = w), { chained: [{ type: 'berth-bandwidth', capabilities: { bandwidth: true } }] });

  it.skipIf(!haveIperf)('shapes the pod to its annotations (10M each way, within 10%); removing the pod removes the ifb', async () => {
    const pod = podSandboxConfig(world, 'bw', { annotations: { 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '10M' } });
    const c = await startContainer(world, containerConfig('c', world.image('busybox'), { command: ['sleep', '3600'] }), pod);
    const { status, info } = await world.runtime.podSandboxStatus({ podSandboxId: c.podId, verbose: true });
    const netns = (JSON.parse(info.info!) as { netns: string }).netns;
    const ip = status!.network!.ip;
    const ifb = ifbName('berth-test', c.podId);
    expect(linkExists(ifb)).toBe(true);

    const toPod = await measure(netns, ip, 15301, false);
    const fromPod = await measure(netns, ip, 15302, true);
    console.log(`iperf3 through berth-cri's bandwidth annotations (10M): to the pod ${(toPod / 1e6).toFixed(2)} Mbit/s, from it ${(fromPod / 1e6).toFixed(2)} Mbit/s`);
    expect(Math.abs(toPod - 10e6) / 10e6).toBeLessThan(0.1);
    expect(Math.abs(fromPod - 10e6) / 10e6).toBeLessThan(0.1);

    await world.runtime.stopPodSandbox({ podSandboxId: c.podId });
    await world.runtime.removePodSandbox({ podSandboxId: c.podId });
    expect(linkExists(ifb)).toBe(false);
  }, 90_000);

  it('a bad annotation is InvalidArgument naming it, and no pod is made', async () => {
    const pod = podSandboxConfig(world, 'bw-bad', { annotations: { 'kubernetes.io/egress-bandwidth': 'lots' } });
    await expect(world.runtime.runPodSandbox({ config: pod, runtimeHandler: '' })).rejects.toMatchObject({
      code: 3,
      details: expect.stringContaining('config.annotations["kubernetes.io/egress-bandwidth"]: "lots" is not a quantity'),
    });
    const { items } = await world.runtime.listPodSandbox({ filter: undefined });
    expect(items.filter((p) => p.metadata?.name === 'bw-bad')).toEqual([]);
  });
});
