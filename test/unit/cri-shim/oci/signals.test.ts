import { describe, expect, it } from 'vitest';
import { signalNumber } from '../../../../cri-shim/oci/signals.js';

describe('signalNumber', () => {
  it('maps stop signal names and numbers', () => {
    expect(signalNumber('')).toBe(15);
    expect(signalNumber('SIGQUIT')).toBe(3);
    expect(signalNumber('int')).toBe(2);
    expect(signalNumber('9')).toBe(9);
    expect(() => signalNumber('SIGNOPE')).toThrow(/StopSignal "SIGNOPE"/);
  });
});
