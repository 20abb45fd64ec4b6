import { readFileSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { BerthError } from '../../lib/errors.js';
import { candidateSubnets, isLeasableSubnet, readNetworkConfigFile } from '../network-config.js';
import type { Lease, LeaseAttrs, LeaseStore, LeaseWatch, NetworkConfig } from '../types.js';

// The single-node lease store: no cluster, no peers. The network config is a file; this node's
// lease is kept in a small JSON state file so a restart gets the same subnet (and pods keep
// their addresses).

export interface FileStoreOptions {
  networkConfigFile: string;
  leaseFile: string;
}

export class FileLeaseStore implements LeaseStore {
  readonly name = 'file';
  private lease?: Lease;

  constructor(private readonly options: FileStoreOptions) {}

  async getNetworkConfig(): Promise<NetworkConfig> {
    return readNetworkConfigFile(this.options.networkConfigFile);
  }

  private saved(): Pick<Lease, 'subnet' | 'ipv6Subnet'> | undefined {
    try {
      const doc = JSON.parse(readFileSync(this.options.leaseFile, 'utf8')) as Pick<Lease, 'subnet' | 'ipv6Subnet'>;
      return doc;
    } catch {
      return undefined;
    }
  }

  async acquire(attrs: LeaseAttrs, config: NetworkConfig, previous?: Pick<Lease, 'subnet' | 'ipv6Subnet'>): Promise<Lease> {
    const saved = this.saved();
    const pick = (family: 4 | 6): string | undefined => {
      const field = family === 4 ? 'subnet' : 'ipv6Subnet';
      for (const candidate of [saved?.[field], previous?.[field]]) if (candidate && isLeasableSubnet(config, candidate)) return candidate;
      const first = candidateSubnets(config, family).next();
      if (first.done) throw new BerthError('resource-exhausted', `no IPv${family} subnet can be leased from the network config`);
      return first.value;
    };
    const lease: Lease = { attrs };
    if (config.enableIPv4) lease.subnet = pick(4);
    if (config.enableIPv6) lease.ipv6Subnet = pick(6);
    writeFileAtomic(this.options.leaseFile, `${JSON.stringify({ subnet: lease.subnet, ipv6Subnet: lease.ipv6Subnet, attrs })}\n`);
    this.lease = lease;
    return lease;
  }

  async list(): Promise<Lease[]> {
    return this.lease ? [this.lease] : [];
  }

  async watch(): Promise<LeaseWatch> {
    // One node: nothing ever changes under us.
    return { close: async () => undefined };
  }

  async release(): Promise<void> {
    rmSync(this.options.leaseFile, { force: true });
    this.lease = undefined;
  }

  async close(): Promise<void> {
    this.lease = undefined;
  }
}
