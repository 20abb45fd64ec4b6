import { describe, expect, it } from 'vitest';
import { effectiveCniLogLevel } from '../../../../cni-plugins/cnid/server.js';

describe('log level served by the daemon', () => {
  it('follows lib/cni/log.ts: unset or unknown is warn', () => {
    expect(effectiveCniLogLevel(undefined)).toBe('warn');
    expect(effectiveCniLogLevel('verbose')).toBe('warn');
    expect(effectiveCniLogLevel('warn')).toBe('warn');
    expect(effectiveCniLogLevel('debug')).toBe('debug');
    expect(effectiveCniLogLevel('silent')).toBe('silent');
  });
});
