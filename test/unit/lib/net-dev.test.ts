import { describe, expect, it } from 'vitest';
import { parseNetDevCounters } from '../../../lib/net-dev.js';

describe('parseNetDevCounters', () => {
  it('reads bytes, packets, errors and drops of both directions for every interface', () => {
    const text = [
      'Inter-|   Receive                                                |  Transmit',
      ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
      '    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0',
      '  eth0: 1234567    1000    3    4    0     0          0         0   765432     900    5    6    0     0       0          0',
      '',
    ].join('\n');
    expect(parseNetDevCounters(text)).toEqual([
      { name: 'lo', rxBytes: 120n, rxPackets: 2n, rxErrors: 0n, rxDropped: 0n, txBytes: 120n, txPackets: 2n, txErrors: 0n, txDropped: 0n },
      { name: 'eth0', rxBytes: 1234567n, rxPackets: 1000n, rxErrors: 3n, rxDropped: 4n, txBytes: 765432n, txPackets: 900n, txErrors: 5n, txDropped: 6n },
    ]);
  });

  it('skips lines that are not a full interface record', () => {
    expect(parseNetDevCounters('')).toEqual([]);
    expect(parseNetDevCounters('eth0: 1 2 3\nveth: a b c d e f g h i j k l m n o p\n')).toEqual([]);
  });
});
