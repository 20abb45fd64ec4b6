import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { criSignalNumber, criSignalOf } from '../../../../cri-shim/oci/signals.js';
import { Signal } from '../../../../proto/gen/runtime/v1/api.js';

describe('CRI stop signals', () => {
  it('maps ContainerConfig.stop_signal to the host signal number; the runtime default to none', () => {
    expect(criSignalNumber(Signal.SIGNAL_SIGINT)).toBe(constants.signals.SIGINT);
    expect(criSignalNumber(Signal.SIGNAL_SIGQUIT)).toBe(constants.signals.SIGQUIT);
    expect(criSignalNumber(Signal.SIGNAL_SIGRTMIN)).toBe(34);
    expect(criSignalNumber(Signal.SIGNAL_SIGRTMAXMINUS1)).toBe(63);
    expect(criSignalNumber(Signal.SIGNAL_RUNTIME_DEFAULT)).toBeUndefined();
    expect(() => criSignalNumber(999 as Signal)).toThrow('config.stop_signal: 999');
  });

  it('reports a signal number back as the CRI Signal (ContainerStatus.stop_signal)', () => {
    expect(criSignalOf(constants.signals.SIGTERM)).toBe(Signal.SIGNAL_SIGTERM);
    expect(criSignalOf(constants.signals.SIGUSR1)).toBe(Signal.SIGNAL_SIGUSR1);
    expect(criSignalOf(0)).toBe(Signal.SIGNAL_RUNTIME_DEFAULT);
    for (const s of [Signal.SIGNAL_SIGHUP, Signal.SIGNAL_SIGWINCH, Signal.SIGNAL_SIGSYS, Signal.SIGNAL_SIGRTMINPLUS3, Signal.SIGNAL_SIGRTMAX]) expect(criSignalOf(criSignalNumber(s)!)).toBe(s);
  });
});
