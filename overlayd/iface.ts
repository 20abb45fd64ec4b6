import { BerthError } from '../lib/errors.js';
import { isIpAddress } from '../lib/ip.js';
import type { AddressInfo, LinkInfo, RtnlSession } from '../lib/netlink/rtnl.js';

// Which interface carries the overlay (the underlay), and which address other nodes reach
// this one at. In flannel's order: --iface (names or addresses, first that exists), then
// --iface-regex (on names and addresses), else the interface of the IPv4 default route.
// --public-ip overrides the advertised address (a node behind NAT).

export interface Underlay {
  index: number;
  name: string;
  mtu: number;
  /** The interface's own IPv4 address (the VXLAN source address). */
  address: string;
  /** Its subnet (CIDR): peers inside it are on our L2 segment (DirectRouting). */
  cidr: string;
  /** What we publish as our public IP: --public-ip, else `address`. */
  publicIP: string;
  publicIPv6?: string;
}

export interface IfaceChoice {
  iface: string[];
  ifaceRegex: string[];
  publicIp?: string;
}

function globalV4(addrs: AddressInfo[], index: number): AddressInfo | undefined {
  return addrs.find((a) => a.index === index && a.family === 4 && a.scope === 0);
}

/** IFA_F_* flags of an address that must not be published as the node's IPv6 endpoint. */
const unusableV6 = 0x01 /* temporary (privacy, rotates) */ | 0x08 /* DAD failed */ | 0x20 /* deprecated */ | 0x40; /* tentative */

/**
 * The IPv6 address peers tunnel to: a global one of the underlay interface, never link-local
 * (a VXLAN remote needs a routable address), nor one that is tentative, failed DAD, deprecated
 * or a rotating privacy address.
 */
export function publicIPv6Of(addrs: AddressInfo[], index: number): string | undefined {
  return addrs.find((a) => a.index === index && a.family === 6 && a.scope === 0 && (a.flags & unusableV6) === 0)?.address;
}

export async function selectUnderlay(nl: RtnlSession, choice: IfaceChoice): Promise<Underlay> {
  const links = await nl.listLinks();
  const addrs = await nl.listAddresses();
  const usable = (l: LinkInfo): boolean => l.name !== 'lo' && globalV4(addrs, l.index) !== undefined;
  let link: LinkInfo | undefined;
  let how = '';
  if (choice.iface.length) {
    for (const want of choice.iface) {
      link = isIpAddress(want) ? links.find((l) => addrs.some((a) => a.index === l.index && a.address === want)) : links.find((l) => l.name === want);
      if (link) {
        how = `--iface ${want}`;
        break;
      }
    }
    if (!link) throw new BerthError('not-found', `--iface ${choice.iface.join(',')}: no such interface or address on this node`);
  } else if (choice.ifaceRegex.length) {
    for (const re of choice.ifaceRegex.map((r) => new RegExp(r))) {
      link = links.find((l) => usable(l) && (re.test(l.name) || addrs.some((a) => a.index === l.index && re.test(a.address))));
      if (link) {
        how = `--iface-regex ${re.source}`;
        break;
      }
    }
    if (!link) throw new BerthError('not-found', `--iface-regex ${choice.ifaceRegex.join(',')}: no interface with an IPv4 address matches`);
  } else if (choice.publicIp && addrs.some((a) => a.address === choice.publicIp)) {
    const index = addrs.find((a) => a.address === choice.publicIp)!.index;
    link = links.find((l) => l.index === index);
    how = `the interface holding --public-ip ${choice.publicIp}`;
  } else {
    const routes = await nl.listRoutes({ family: 4 });
    const dflt = routes.filter((r) => r.dst === '0.0.0.0/0' && r.index !== undefined).sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0))[0];
    link = dflt ? links.find((l) => l.index === dflt.index) : undefined;
    how = 'the default route';
    if (!link) throw new BerthError('not-found', 'no IPv4 default route to pick the underlay interface from; pass --iface or --iface-regex');
  }
  if (!link) throw new BerthError('not-found', `no underlay interface found (${how})`);
  const a = globalV4(addrs, link.index);
  if (!a) throw new BerthError('failed-precondition', `underlay ${link.name} (${how}) has no IPv4 address`);
  return { index: link.index, name: link.name, mtu: link.mtu, address: a.address, cidr: a.cidr, publicIP: choice.publicIp ?? a.address, publicIPv6: publicIPv6Of(addrs, link.index) };
}
