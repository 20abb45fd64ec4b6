import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { berthPlugin, runCni, type CniCall, type CniOutcome } from '../../../../world/cni.js';

// Shared by the host-local integration tests: the built executable, a temp dataDir per test,
// and a view of the lease directory.

export const hostLocal = berthPlugin('berth-host-local');
export const referenceHostLocal = '/usr/lib/cni/host-local';

export class TempDataDir {
  path = '';

  create(): string {
    this.path = mkdtempSync(join(tmpdir(), 'berth-ipam-it-'));
    return this.path;
  }

  remove(): void {
    if (this.path) rmSync(this.path, { recursive: true, force: true });
    this.path = '';
  }

  networkDir(network: string): string {
    return join(this.path, network);
  }

  /** Lease files (address -> content) of a network; absent directory -> empty. */
  leases(network: string): Record<string, string> {
    const dir = this.networkDir(network);
    if (!existsSync(dir)) return {};
    const out: Record<string, string> = {};
    for (const name of readdirSync(dir).sort()) {
      if (name === 'lock' || name.startsWith('last_reserved_ip.')) continue;
      out[name] = readFileSync(join(dir, name), 'utf8');
    }
    return out;
  }

  /** Every file of the network directory with its content, to prove a call changed nothing. */
  snapshot(network: string): Record<string, string> {
    const dir = this.networkDir(network);
    if (!existsSync(dir)) return {};
    return Object.fromEntries(readdirSync(dir).sort().map((n) => [n, readFileSync(join(dir, n), 'utf8')]));
  }
}

export interface Attachment {
  id: string;
  ifname?: string;
  args?: string;
  env?: Record<string, string | undefined>;
}

/** Run a host-local executable for one attachment (CNI_NETNS set; IPAM never enters it). */
export function runIpam(executable: string, command: string, attachment: Attachment, stdin: string | object): Promise<CniOutcome> {
  const call: CniCall = {
    command,
    containerId: attachment.id,
    netns: '/var/run/netns/berth-ipam-test',
    ifname: attachment.ifname ?? 'eth0',
    args: attachment.args,
    env: attachment.env,
  };
  return runCni(executable, call, stdin);
}

export function ipsOf(outcome: CniOutcome): { address: string; gateway?: string; version?: string }[] {
  const ips = outcome.json?.ips;
  if (outcome.code !== 0 || !Array.isArray(ips)) throw new Error(`ADD failed: exit ${outcome.code}: ${outcome.stdout} ${outcome.stderr}`);
  return ips as { address: string; gateway?: string; version?: string }[];
}
