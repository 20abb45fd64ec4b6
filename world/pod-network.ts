import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CniOutcome } from './cni.js';
import { trySh } from './netns.js';

// What several integration tests ask of a pod network: the lease files host-local wrote, the
// ports of a bridge, and the pod's first address from an ADD result.

/** Lease files (one per IP) of a network under a host-local dataDir. */
export function leaseFiles(dataDir: string, network: string): string[] {
  const dir = join(dataDir, network);
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/i.test(f)) : [];
}

/** Links enslaved to a bridge, one `ip -o link` line each. */
export function bridgePorts(bridge: string): string[] {
  return trySh('ip', ['-o', 'link', 'show', 'master', bridge]).stdout.trim().split('\n').filter(Boolean);
}

/** The first IP of an ADD result, without its prefix length. */
export function firstIp(out: CniOutcome): string {
  const address = (out.json?.ips as { address: string }[] | undefined)?.[0]?.address;
  if (!address) throw new Error(`no IP in the ADD result: ${out.stdout} ${out.stderr}`);
  return address.split('/')[0]!;
}

export interface PodNetwork {
  network: string;
  bridge: string;
  subnet: string;
  dataDir: string;
}

/** A berth-bridge network config with in-process host-local IPAM and a default route. */
export function bridgeNetconf(net: PodNetwork, over: Record<string, unknown> = {}, ipamOver: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: net.network,
    type: 'berth-bridge',
    bridge: net.bridge,
    isGateway: true,
    ipam: { type: 'berth-host-local', ranges: [[{ subnet: net.subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: net.dataDir, ...ipamOver },
    ...over,
  };
}
