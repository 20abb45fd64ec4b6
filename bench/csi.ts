import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Client, credentials } from '@grpc/grpc-js';
import { ControllerService, NodeService } from '../proto/gen/csi.js';
import { median, printStepMedians } from './common.js';
import { CsiDriver, csiCaller, MiB, mountCap, type Caller } from '../world/csi.js';

// bench/csi: sequential volume cycles (CreateVolume, NodeStageVolume, NodePublishVolume,
// NodeUnpublishVolume, NodeUnstageVolume, DeleteVolume) against berth-csi for directory and
// filesystem volumes, and, when a running peer driver's socket is given (BENCH_CSI_PEER, e.g.
// the hostpath demo driver started by hand), the same directory cycles against it, alternating
// rounds so neither gets the warmer machine. Prints cycles/s, per-RPC medians and ratios.
// Asserts nothing. The hostpath driver is never built or started by this script.

const cycles = Number(process.env.BENCH_CSI_CYCLES ?? 100);
const peerSocket = process.env.BENCH_CSI_PEER;
/** What the issue measured for hostpath here, for a run without a peer. */
const hostpathAnchor = 40;

const rpcs = ['CreateVolume', 'NodeStageVolume', 'NodePublishVolume', 'NodeUnpublishVolume', 'NodeUnstageVolume', 'DeleteVolume'] as const;
type Rpc = (typeof rpcs)[number];
type Timings = Record<Rpc, number[]> & { cycle: number[] };

interface Target {
  label: string;
  controller: Caller<typeof ControllerService>;
  node: Caller<typeof NodeService>;
  parameters: Record<string, string>;
  sizeBytes: number;
  hostDir: string;
}

function emptyTimings(): Timings {
  return Object.fromEntries([...rpcs, 'cycle'].map((k) => [k, []])) as unknown as Timings;
}

async function timed<T>(out: number[], fn: () => Promise<T>): Promise<T> {
  const t = process.hrtime.bigint();
  const r = await fn();
  out.push(Number(process.hrtime.bigint() - t) / 1e6);
  return r;
}

let seq = 0;
async function cycle(t: Target, out: Timings): Promise<void> {
  const n = ++seq;
  const cap = mountCap();
  const staging = `${t.hostDir}/staging-${n}`;
  const target = `${t.hostDir}/pod-${n}/volume`;
  // kubelet makes the pod's volume directory (the target's parent) before it publishes.
  mkdirSync(dirname(target), { recursive: true });
  const started = process.hrtime.bigint();
  const { volume } = await timed(out.CreateVolume, () => t.controller.createVolume({ name: `bench-${t.label}-${n}`, volumeCapabilities: [cap], parameters: t.parameters, capacityRange: { requiredBytes: BigInt(t.sizeBytes) } }));
  const volumeId = volume!.volumeId;
  const context = volume!.volumeContext;
  await timed(out.NodeStageVolume, () => t.node.nodeStageVolume({ volumeId, stagingTargetPath: staging, volumeCapability: cap, volumeContext: context }));
  await timed(out.NodePublishVolume, () => t.node.nodePublishVolume({ volumeId, stagingTargetPath: staging, targetPath: target, volumeCapability: cap, volumeContext: context }));
  await timed(out.NodeUnpublishVolume, () => t.node.nodeUnpublishVolume({ volumeId, targetPath: target }));
  await timed(out.NodeUnstageVolume, () => t.node.nodeUnstageVolume({ volumeId, stagingTargetPath: staging }));
  await timed(out.DeleteVolume, () => t.controller.deleteVolume({ volumeId }));
  out.cycle.push(Number(process.hrtime.bigint() - started) / 1e6);
}

function report(label: string, out: Timings): number {
  const total = out.cycle.reduce((a, b) => a + b, 0);
  const perSecond = (out.cycle.length / total) * 1000;
  console.log(`${label.padEnd(30)} ${perSecond.toFixed(1).padStart(7)} cycles/s   ${rpcs.map((r) => `${r.replace('Volume', '')} ${median(out[r]).toFixed(2)}`).join('  ')}`);
  return perSecond;
}

async function main(): Promise<void> {
  // Debug logs carry each RPC's time inside the driver ("rpc done"), printed as handler medians.
  // BENCH_CSI_NODE_ARGS: flags for the driver's node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = process.env.BENCH_CSI_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const driver = await CsiDriver.start({ args: ['--directory-size-enforcement', 'unenforced', '--log-level', 'debug'], nodeArgs });
  try {
    const probe = await driver.controller.createVolume({ name: 'bench-probe', volumeCapabilities: [mountCap()], parameters: { type: 'directory' }, capacityRange: { requiredBytes: BigInt(MiB) } });
    const quota = probe.volume!.volumeContext.sizeEnforced === 'true';
    await driver.controller.deleteVolume({ volumeId: probe.volume!.volumeId });
    const berth = (parameters: Record<string, string>, sizeBytes: number, label: string): Target => ({
      label,
      controller: driver.controller,
      node: driver.node,
      parameters,
      sizeBytes,
      hostDir: driver.hostDir,
    });
    let peer: Target | undefined;
    let peerClient: Client | undefined;
    if (peerSocket) {
      if (!existsSync(peerSocket)) throw new Error(`BENCH_CSI_PEER=${peerSocket}: no such socket (start the peer driver first)`);
      peerClient = new Client(`unix://${peerSocket}`, credentials.createInsecure());
      peer = { label: 'peer', controller: csiCaller(peerClient, ControllerService), node: csiCaller(peerClient, NodeService), parameters: {}, sizeBytes: 64 * MiB, hostDir: `${driver.hostDir}/peer` };
    }
    const directory = berth({ type: 'directory' }, 64 * MiB, 'directory');
    const ext4 = berth({ type: 'filesystem', fsType: 'ext4' }, 64 * MiB, 'ext4');
    const xfs = berth({ type: 'filesystem', fsType: 'xfs' }, 300 * MiB, 'xfs');

    console.log(`bench/csi: ${cycles} sequential cycles per kind (Create, Stage, Publish, Unpublish, Unstage, Delete); per-RPC medians in ms`);
    console.log(`directory volumes: ${quota ? 'size enforced by project quotas' : 'size NOT enforced (this kernel has no project quota support)'}`);
    // Warm both sides up (JIT, page cache, gRPC connection) before measuring.
    for (let i = 0; i < 5; i++) {
      await cycle(directory, emptyTimings());
      if (peer) await cycle(peer, emptyTimings());
    }
    const dirTimes = emptyTimings();
    const peerTimes = emptyTimings();
    for (let i = 0; i < cycles; i++) {
      await cycle(directory, dirTimes);
      if (peer) await cycle(peer, peerTimes);
    }
    const dirRate = report('berth-csi directory', dirTimes);
    const probes: number[] = [];
    for (let i = 0; i < 200; i++) await timed(probes, () => driver.identity.probe());
    console.log(`${'berth-csi Probe (bare gRPC round trip)'.padEnd(30)} ${median(probes).toFixed(2)} ms`);
    if (peer) {
      const peerRate = report(`peer (${peerSocket}) directory`, peerTimes);
      console.log(`berth-csi directory vs peer: ${(dirRate / peerRate).toFixed(2)}x cycles/s (target >= 1.5x)`);
    } else {
      console.log(`berth-csi directory vs hostpath's ${hostpathAnchor} cycles/s measured for the issue (no peer in this run; set BENCH_CSI_PEER): ${(dirRate / hostpathAnchor).toFixed(2)}x`);
    }
    for (const kind of [ext4, xfs]) {
      const times = emptyTimings();
      const n = Math.max(10, Math.floor(cycles / 4));
      await cycle(kind, emptyTimings());
      for (let i = 0; i < n; i++) await cycle(kind, times);
      report(`berth-csi filesystem ${kind.label} (${n})`, times);
    }
    printStepMedians(driver.log(), 'berth-csi (inside the driver)');
  } finally {
    await driver.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
