import type { CniDns } from '../../lib/cni/types.js';

// resolv.conf -> CNI dns, read the way the reference host-local reads it: one keyword per line,
// '#' and ';' start comments, `search` and `options` take every word after the keyword, a later
// `domain` replaces an earlier one. Lines with fewer than two words are ignored.

export function parseResolvConf(text: string): CniDns {
  const dns: CniDns = {};
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const words = line.split(/\s+/);
    const [keyword, first] = words;
    if (keyword === undefined || first === undefined) continue;
    switch (keyword) {
      case 'nameserver':
        (dns.nameservers ??= []).push(first);
        break;
      case 'domain':
        dns.domain = first;
        break;
      case 'search':
        (dns.search ??= []).push(...words.slice(1));
        break;
      case 'options':
        (dns.options ??= []).push(...words.slice(1));
        break;
      default:
        break;
    }
  }
  return dns;
}
