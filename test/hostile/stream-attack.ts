import { expect } from 'vitest';
import type { ContainerConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, type CriWorld } from '../../world/cri.js';
import { startContainer } from '../../world/cri-suite.js';
import { underAttack, type AttackReport } from '../../world/hostile.js';

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
