import { describe, expect, it } from 'vitest';
import type { BerthError } from '../../../../lib/errors.js';
import { conf } from './fixtures.js';

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    return (e as BerthError).cniCode;
  }
  return undefined;
}

describe('berth-overlay config', () => {
  it('has flannel-like defaults with berth names', () => {
    expect(conf()).toMatchObject({
      network: 'overlay',
      subnetFile: '/run/berth/subnet.env',
      dataDir: '/var/lib/cni/berth-overlay',
      delegate: { type: 'berth-bridge' },
      ipam: { type: 'berth-host-local' },
      runtimeConfig: undefined,
    });
  });

  it('accepts the runtime-injected keys and cni.dev/ keys', () => {
    expect(() => conf({ prevResult: { cniVersion: '1.1.0' }, runtimeConfig: { portMappings: [] }, args: { cni: {} }, capabilities: { portMappings: true }, 'cni.dev/valid-attachments': [] })).not.toThrow();
  });

  const bad: [string, Record<string, unknown>, RegExp, number][] = [
    ['an unknown field', { bridge: 'cni0' }, /^bridge: "cni0" is not a berth-overlay field/, 2],
    ['a subnetFile that is not a string', { subnetFile: 42 }, /^subnetFile: expected a string, got 42/, 7],
    ['a relative subnetFile', { subnetFile: 'subnet.env' }, /^subnetFile: expected an absolute path/, 7],
    ['a relative dataDir', { dataDir: 'x' }, /^dataDir: expected an absolute path, got "x"/, 7],
    ['a delegate that is not an object', { delegate: 'bridge' }, /^delegate: expected an object, got "bridge"/, 7],
    ['a delegate type that is a path', { delegate: { type: '/bin/sh' } }, /^delegate\.type: .* must be a plugin name/, 7],
    ['a delegate type that is not a string', { delegate: { type: 3 } }, /^delegate\.type: expected a string, got 3/, 7],
    ['a delegate name', { delegate: { name: 'x' } }, /^delegate\.name: "x" cannot be overridden/, 7],
    ['a delegate ipam', { delegate: { ipam: {} } }, /^delegate\.ipam: .*top-level "ipam"/, 7],
    ['ipam ranges', { ipam: { ranges: [] } }, /^ipam\.ranges: .*subnet file/, 7],
    ['ipam routes that are not a list', { ipam: { routes: {} } }, /^ipam\.routes: expected an array/, 7],
    ['an ipam route without dst', { ipam: { routes: [{ gw: '1.2.3.4' }] } }, /^ipam\.routes\[0\]: /, 7],
    ['runtimeConfig that is not an object', { runtimeConfig: [] }, /^runtimeConfig: expected an object/, 7],
  ];
  for (const [name, over, msg, code] of bad) {
    it(`rejects ${name} with code ${code} and a message naming the field`, () => {
      expect(() => conf(over)).toThrow(msg);
      expect(codeOf(() => conf(over))).toBe(code);
    });
  }
});
