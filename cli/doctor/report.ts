// How `berth doctor` shows its findings: one line per finding (`ok|warn|fail  name: finding`,
// then `      fix: ...` when not ok) and a last line with the verdict; or one JSON document.
import { canRunPods, type Finding } from './checks.js';

export function formatFindings(findings: readonly Finding[]): string {
  let out = '';
  for (const f of findings) {
    out += `${f.status.padEnd(4)}  ${f.name}: ${f.finding}\n`;
    if (f.status !== 'ok' && f.fix) out += `      fix: ${f.fix}\n`;
  }
  const failures = findings.filter((f) => f.status === 'fail').length;
  const warnings = findings.filter((f) => f.status === 'warn').length;
  const counts = `${failures} failure${failures === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`;
  out += canRunPods(findings) ? `\nberth doctor: ${counts}: this node can run pods\n` : `\nberth doctor: ${counts}: this node cannot run pods until the failures are fixed\n`;
  return out;
}

export function findingsJson(findings: readonly Finding[]): string {
  return `${JSON.stringify({ canRunPods: canRunPods(findings), checks: findings }, null, 2)}\n`;
}
