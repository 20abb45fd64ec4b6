import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../../csi-driver/main-args.js';
import { kindOf } from './fixtures.js';

describe('berth-csi command line', () => {
  it('--node-id is required, with a hint', () => {
    expect(kindOf(() => parseArgs([]))).toMatch(/nodeId is required \(--node-id NAME/);
  });
  it('flags set the config, --kubelet-registration is a switch', () => {
    const c = parseArgs(['--node-id', 'n1', '--root=/srv/v', '--kubelet-registration', '--max-volumes-per-node', '8']);
    expect(c).toMatchObject({ nodeId: 'n1', root: '/srv/v', kubeletRegistration: true, maxVolumesPerNode: 8 });
  });
  it('an unknown flag and a bad value are named', () => {
    expect(kindOf(() => parseArgs(['--node-id', 'n1', '--bogus', 'x']))).toMatch(/unknown flag --bogus/);
    expect(kindOf(() => parseArgs(['--node-id', 'n1', '--default-type', 'nfs']))).toMatch(/defaultType/);
    expect(kindOf(() => parseArgs(['--node-id', 'n1', '--root', 'relative']))).toMatch(/root: must be an absolute path/);
  });
  it('the stats walk bounds have defaults, flags, and name themselves when out of range', () => {
    expect(parseArgs(['--node-id', 'n1'])).toMatchObject({ statsWalkMaxEntries: 1_000_000, statsWalkMaxDepth: 128, statsWalkTimeoutMs: 10_000 });
    const c = parseArgs(['--node-id', 'n1', '--stats-walk-max-entries', '5000', '--stats-walk-max-depth', '16', '--stats-walk-timeout-ms', '250']);
    expect(c).toMatchObject({ statsWalkMaxEntries: 5000, statsWalkMaxDepth: 16, statsWalkTimeoutMs: 250 });
    expect(kindOf(() => parseArgs(['--node-id', 'n1', '--stats-walk-max-entries', '0']))).toMatch(/statsWalkMaxEntries/);
    expect(kindOf(() => parseArgs(['--node-id', 'n1', '--stats-walk-max-depth', '5000']))).toMatch(/statsWalkMaxDepth/);
    expect(kindOf(() => parseArgs(['--node-id', 'n1', '--stats-walk-timeout-ms', 'soon']))).toMatch(/statsWalkTimeoutMs/);
  });
});
