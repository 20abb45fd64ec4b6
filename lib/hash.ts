// FNV-1a, 64 bit: a stable short name from a longer identity (e.g. a host veth from container
// ID + ifname). Not cryptographic; node:crypto would cost a CNI executable several ms to load.

const offset = 0xcbf29ce484222325n;
const prime = 0x100000001b3n;
const mask = 0xffffffffffffffffn;

export function fnv1a64(text: string): bigint {
  let h = offset;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= BigInt(byte);
    h = (h * prime) & mask;
  }
  return h;
}

/** `length` hex digits of the FNV-1a hash (at most 16). */
export function shortHash(text: string, length: number): string {
  return fnv1a64(text).toString(16).padStart(16, '0').slice(0, length);
}
