import { describe, expect, it } from 'vitest';
import { parseNetDev } from '../../../../cri-shim/pod/stats.js';

describe('parseNetDev', () => {
  it('reads interface counters from /proc/<pid>/net/dev', () => {
    const text = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0',
      '  eth0: 1234567    1000    3    0    0     0          0         0   765432     900    5    0    0     0       0          0',
    ].join('\n');
    expect(parseNetDev(text)).toEqual([
      { name: 'lo', rxBytes: 120n, rxErrors: 0n, txBytes: 120n, txErrors: 0n },
      { name: 'eth0', rxBytes: 1234567n, rxErrors: 3n, txBytes: 765432n, txErrors: 5n },
    ]);
    expect(parseNetDev('')).toEqual([]);
  });
});
