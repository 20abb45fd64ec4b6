import { expect } from 'vitest';
import type { ContainerConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer } from '../../world/cri-suite.js';
import { underAttack, type AttackReport } from '../../world/hostile.js';
import { floodUnread, type RawWire } from './raw-client.js';

// What every attack on berth-cri's streaming server shares: the daemon under attack, probed
// with CRI Version while the attack runs, and what it must have survived.

/** Run `attack` against berth-cri, probing it with Version (see world/hostile.ts). */
export function attackCri(world: CriWorld, attack: () => Promise<void>, settleMs?: number): Promise<AttackReport> {
  return underAttack({ pid: world.cri.child.pid!, probe: () => world.runtime.version({ version: '' }), settleMs }, attack);
}

/** Alive, memory bounded, and answering quickly all along. */
export function expectSurvived(report: AttackReport): void {
  expect(report.alive).toBe(true);
  expect(report.rssGrowthMiB).toBeLessThan(64);
  expect(report.slowestProbeMs).toBeLessThan(500);
}

let seq = 0;

/** A running busybox container (`sleep 3600` unless given a command). */
export async function busybox(world: CriWorld, overrides: Partial<ContainerConfig> = {}): Promise<{ id: string; podId: string }> {
  return startContainer(world, containerConfig(`hostile${++seq}`, world.image('busybox'), { command: ['sleep', '3600'], ...overrides }));
}

/** A one-time Exec URL for `cmd` in `containerId`. */
export async function execUrl(world: CriWorld, containerId: string, cmd: string[], stdio: { stdin?: boolean; tty?: boolean } = {}): Promise<string> {
  const tty = stdio.tty ?? false;
  return (await world.runtime.exec({ containerId, cmd, stdin: stdio.stdin ?? false, stdout: true, stderr: !tty, tty })).url;
}

/**
 * A container writing without end (`yes` with 4 KB lines: one CRI log record per 4 KB keeps its
 * output, and a client's lag, growing at MB/s; `yes` alone is held to the pace of a log record
 * per 2 bytes), and a one-time Attach URL for its output.
 */
export async function endlessWriterAttachUrl(world: CriWorld): Promise<{ id: string; url: string }> {
  const c = await busybox(world, { command: ['yes', 'y'.repeat(4000)] });
  const { url } = await world.runtime.attach({ containerId: c.id, stdin: false, stdout: true, stderr: true, tty: false });
  return { id: c.id, url };
}

/**
 * A client, opened by `open` on an exec URL of a fresh container, writes `batch` again and again
 * and never reads: berth-cri must survive it and cut the client off well before `maxBytes`.
 */
export async function expectFloodCutOff(world: CriWorld, open: (url: string) => Promise<RawWire>, batch: Buffer, maxBytes: number): Promise<void> {
  const c = await busybox(world);
  let wire!: RawWire;
  let sent = 0;
  const report = await attackCri(world, async () => {
    wire = await open(await execUrl(world, c.id, ['sleep', '30']));
    sent = await floodUnread(wire, batch, maxBytes);
  });
  expectSurvived(report);
  await Promise.race([wire.closed, new Promise((r) => setTimeout(r, 5000))]);
  expect(wire.ended).toBeDefined();
  expect(sent).toBeLessThan(maxBytes);
}
