import { shortHash } from '../../lib/hash.js';
import type { TbfSpec } from '../../lib/netlink/tc-messages.js';
import type { Limit } from './config.js';

// Pure planning for berth-bandwidth: the ifb device's name and label, and the token bucket of
// each direction in the kernel's units (bytes).
//
// Directions are the pod's: ingress (traffic to the pod) leaves the host through the host-side
// veth, so a TBF as that veth's root qdisc shapes it. Egress (traffic from the pod) arrives on
// the host veth, where nothing can queue it; an ingress qdisc there redirects every packet to an
// ifb device, whose own root TBF shapes it on the way back out.

export interface Attachment {
  network: string;
  containerId: string;
  ifname: string;
}

const ifbPrefix = 'bwp';

/** The ifb device of a pod: "bwp" and 12 hex digits of a hash of network and container ID (15 bytes, IFNAMSIZ-1), as the reference names them. */
export function ifbName(network: string, containerId: string): string {
  return ifbPrefix + shortHash(network + containerId, 12);
}

/** The ifb's alias: who owns it, so GC can find the devices of its network without the hash. */
export function ifbAlias(a: Attachment): string {
  return `berth-bandwidth net=${a.network} id=${a.containerId} if=${a.ifname}`;
}

export function parseIfbAlias(alias: string | undefined): Attachment | undefined {
  const m = alias && /^berth-bandwidth net=(\S+) id=(\S+) if=(\S+)$/.exec(alias);
  return m ? { network: m[1]!, containerId: m[2]!, ifname: m[3]! } : undefined;
}

// How long a packet may wait for tokens before the queue is full (the reference's latency).
const queueLatencySeconds = 0.025;

/** The TBF for a limit in bits: rate and bucket in bytes, and a queue of 25 ms at the rate on top of the bucket. */
export function tbfFor(limit: Limit): TbfSpec {
  const rate = Math.floor(limit.rate / 8);
  const burst = Math.max(1, Math.floor(limit.burst / 8));
  const queue = Math.floor(rate * queueLatencySeconds) + burst;
  return { rate, burst, limit: Math.min(queue, 0xffffffff) };
}
