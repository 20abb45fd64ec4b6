import { accessSync, type Dirent, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BerthError } from '../../lib/errors.js';
import { createFileExclusive, removeFileIfExists, writeFileAtomic } from '../../lib/atomic-file.js';
import { formatAddress, parseIp, type IpAddress } from '../../lib/ip.js';

// The lease store on disk, in the reference host-local's layout so that a node can switch
// between that plugin and ours without losing a lease:
//   <dataDir>/<network>/<IP>                  "<containerID>\r\n<ifname>" (older: "<containerID>")
//   <dataDir>/<network>/last_reserved_ip.<N>  the last address reserved in range set N
//   <dataDir>/<network>/lock                  flock(2)ed by the reference
// Node cannot flock, so nothing here relies on the lock: a lease is taken with an atomic
// exclusive create (link(2) of a complete temp file), which the reference's O_EXCL create and
// ours can never both win. File names are the address as Go prints it (see ip.ts).

export const lineBreak = '\r\n';
const lastReservedPrefix = 'last_reserved_ip.';

export interface Lease {
  address: IpAddress;
  containerId: string;
  /** Undefined in files written by older reference versions, which held only the ID. */
  ifname: string | undefined;
}

/** Read a lease file's content the way the reference compares it: trimmed, split at \r\n. */
export function parseLeaseContent(content: string): { containerId: string; ifname: string | undefined } {
  const text = content.trim();
  const at = text.indexOf(lineBreak);
  if (at < 0) return { containerId: text, ifname: undefined };
  return { containerId: text.slice(0, at), ifname: text.slice(at + lineBreak.length) };
}

export function leaseContent(containerId: string, ifname: string): string {
  return containerId.trim() + lineBreak + ifname;
}

/**
 * The leases of one attachment. Like the reference: files naming both the container and the
 * interface; only if there are none, files of that container written in the old ID-only form.
 */
export function leasesOf(leases: readonly Lease[], containerId: string, ifname: string): Lease[] {
  const exact = leases.filter((l) => l.containerId === containerId && l.ifname === ifname);
  if (exact.length > 0) return exact;
  return leases.filter((l) => l.containerId === containerId && l.ifname === undefined);
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

export class LeaseStore {
  readonly dir: string;

  constructor(dataDir: string, network: string) {
    this.dir = join(dataDir, network);
  }

  exists(): boolean {
    return existsSync(this.dir);
  }

  /** Create the network directory and the reference's lock file, so both plugins share them. */
  prepare(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    const lock = join(this.dir, 'lock');
    if (!existsSync(lock)) closeSync(openSync(lock, 'a', 0o644));
  }

  leasePath(address: IpAddress): string {
    return join(this.dir, formatAddress(address));
  }

  /** Every lease of the network; an absent directory has none. Other files are ignored. */
  list(): Lease[] {
    let entries: Dirent[];
    try {
      entries = readdirSync(this.dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
    const leases: Lease[] = [];
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const name = entry.name;
      const address = parseIp(name);
      // Only canonical names are leases; temp files and last_reserved_ip.N are not addresses.
      if (!address || formatAddress(address) !== name) continue;
      let content: string;
      try {
        content = readFileSync(join(this.dir, name), 'utf8');
      } catch (err) {
        if (isMissing(err)) continue; // released while we listed
        throw err;
      }
      leases.push({ address, ...parseLeaseContent(content) });
    }
    return leases;
  }

  /** Take the address for the attachment; false if anyone (us or the reference) holds it. */
  reserve(address: IpAddress, containerId: string, ifname: string): boolean {
    return createFileExclusive(this.leasePath(address), leaseContent(containerId, ifname), { mode: 0o644 });
  }

  /** Give the address back; false if it was not leased. */
  release(address: IpAddress): boolean {
    return removeFileIfExists(this.leasePath(address));
  }

  /**
   * Release every lease of the attachment (see leasesOf); returns what was released. Tries
   * them all before reporting a failure, so one stuck file does not keep the others leased.
   */
  releaseAttachment(containerId: string, ifname: string): Lease[] {
    const released: Lease[] = [];
    const failures: string[] = [];
    for (const lease of leasesOf(this.list(), containerId, ifname)) {
      try {
        if (this.release(lease.address)) released.push(lease);
      } catch (err) {
        failures.push(`${formatAddress(lease.address)}: ${(err as Error).message}`);
      }
    }
    if (failures.length > 0) {
      throw new BerthError('io', `could not release the leases of container ${containerId} (${ifname}) in ${this.dir}: ${failures.join('; ')}`);
    }
    return released;
  }

  /** The round-robin cursor of range set `index`; unreadable or foreign content counts as none. */
  lastReserved(index: number): IpAddress | undefined {
    try {
      return parseIp(readFileSync(join(this.dir, lastReservedPrefix + index), 'utf8').trim());
    } catch {
      return undefined;
    }
  }

  recordLastReserved(index: number, address: IpAddress): void {
    // Only a hint for the next allocation: losing it in a crash costs round-robin order once,
    // so it is not worth an fsync on the pod's critical path.
    writeFileAtomic(join(this.dir, lastReservedPrefix + index), formatAddress(address), { mode: 0o644, durable: false });
  }

  /** Temp files left behind by a process that died between creating and renaming them. */
  removeStaleTempFiles(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
    const stale = names.filter((n) => n.startsWith('.') && n.endsWith('.tmp'));
    return stale.filter((n) => removeFileIfExists(join(this.dir, n)));
  }

  /** Whether leases can be written: the directory, or the nearest existing parent of it. */
  writable(): { ok: true } | { ok: false; path: string; reason: string } {
    let path = this.dir;
    while (!existsSync(path) && dirname(path) !== path) path = dirname(path);
    try {
      if (!statSync(path).isDirectory()) return { ok: false, path, reason: 'not a directory' };
      accessSync(path, constants.W_OK | constants.X_OK);
      return { ok: true };
    } catch (err) {
      return { ok: false, path, reason: (err as Error).message };
    }
  }
}
