import { describe, expect, it } from 'vitest';
import { hostnameOf, isLoopbackAddress, namesLoopback } from '../../../../cri-shim/registry/loopback.js';

describe('loopback', () => {
  it('takes 127/8, ::1 and 127/8 mapped into IPv6 as loopback addresses, nothing else', () => {
    for (const a of ['127.0.0.1', '127.255.1.2', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:7f00:2']) expect(isLoopbackAddress(a), a).toBe(true);
    for (const a of ['128.0.0.1', '10.0.0.1', '::2', '::', '::ffff:10.0.0.1', '::127.0.0.1', 'fe80::1', '0177.0.0.1', '127.1', 'localhost', '127.evil.example', '']) expect(isLoopbackAddress(a), a).toBe(false);
  });

  it('decides on the host name, not on a text prefix: 127.evil.example is a name', () => {
    for (const h of ['localhost', 'LOCALHOST:5000', '127.0.0.1:5000', '127.3.2.1', '[::1]:5000', '[::ffff:127.0.0.1]:443', '::1']) expect(namesLoopback(h), h).toBe(true);
    for (const h of ['127.evil.example', '127.evil.example:5000', '127.0.0.1.nip.io', 'localhost.evil.example', '[::2]:5000', 'registry:5000']) expect(namesLoopback(h), h).toBe(false);
  });

  it('strips the port and brackets of a host', () => {
    expect(hostnameOf('reg.test:5000')).toBe('reg.test');
    expect(hostnameOf('[::1]:5000')).toBe('::1');
    expect(hostnameOf('[fd00::2]')).toBe('fd00::2');
    expect(hostnameOf('fd00::2')).toBe('fd00::2');
    expect(hostnameOf('reg.test')).toBe('reg.test');
  });
});
