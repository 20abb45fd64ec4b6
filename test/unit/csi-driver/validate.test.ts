import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkHostPath, parseCapability, parseQuantity, requireId, sizeFitsRange, sizeForRange } from '../../../csi-driver/validate.js';
import { VolumeCapability_AccessMode_Mode as Mode } from '../../../proto/gen/csi.js';
import { kindOf, mount } from './fixtures.js';

const MiB = 1 << 20;

describe('capacity ranges', () => {
  it('no range gives the default size', () => {
    expect(sizeForRange(undefined, 1024 * MiB, 16 * MiB, 'capacity_range')).toBe(1024 * MiB);
  });
  it('required bytes are rounded up to whole MiB and to the type minimum', () => {
    expect(sizeForRange({ requiredBytes: BigInt(MiB + 1), limitBytes: 0n }, 0, MiB, 'f')).toBe(2 * MiB);
    expect(sizeForRange({ requiredBytes: BigInt(MiB), limitBytes: 0n }, 0, 16 * MiB, 'f')).toBe(16 * MiB);
  });
  it('a limit equal to required is met byte for byte, even off a MiB boundary', () => {
    expect(sizeForRange({ requiredBytes: 20_000_001n, limitBytes: 20_000_001n }, 0, MiB, 'f')).toBe(20_000_001);
  });
  it('only a limit: the default, capped at the limit', () => {
    expect(sizeForRange({ requiredBytes: 0n, limitBytes: BigInt(64 * MiB) }, 1024 * MiB, MiB, 'f')).toBe(64 * MiB);
  });
  it('required above limit, or a limit under the minimum, is OUT_OF_RANGE naming the field', () => {
    expect(kindOf(() => sizeForRange({ requiredBytes: 10n, limitBytes: 5n }, 0, 0, 'capacity_range'))).toMatch(/^out-of-range: capacity_range/);
    expect(kindOf(() => sizeForRange({ requiredBytes: 0n, limitBytes: BigInt(100 * MiB) }, 0, 300 * MiB, 'capacity_range'))).toMatch(/^out-of-range: capacity_range: limit_bytes/);
  });
  it('an existing size fits a range when between required and limit', () => {
    expect(sizeFitsRange(10, { requiredBytes: 10n, limitBytes: 0n })).toBe(true);
    expect(sizeFitsRange(10, { requiredBytes: 11n, limitBytes: 0n })).toBe(false);
    expect(sizeFitsRange(10, { requiredBytes: 1n, limitBytes: 9n })).toBe(false);
  });
});

describe('quantities', () => {
  it.each([['100Mi', 100 * MiB], ['1Gi', 1024 * MiB], ['500M', 500e6], ['1073741824', 1073741824], ['1.5Gi', 1.5 * 1024 * MiB]])('%s is %d bytes', (q, bytes) => {
    expect(parseQuantity(q, 'size')).toBe(bytes);
  });
  it.each(['12 apples', '', '-1Gi', '0', '1Xi'])('"%s" is refused naming the field', (q) => {
    expect(kindOf(() => parseQuantity(q, 'volume_context.size'))).toMatch(/^invalid-argument: volume_context.size/);
  });
});

describe('IDs and paths', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-paths-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['../etc', 'a/b', '.hidden', '', 'x'.repeat(129), 'a\0b'])('ID %j is refused', (id) => {
    expect(kindOf(() => requireId(id, 'volume_id'))).toMatch(/^invalid-argument: volume_id/);
  });
  it('an ID of letters, digits, ".", "_" and "-" is accepted', () => {
    expect(requireId('vol-0mx6c595j000-wo8r', 'volume_id')).toBe('vol-0mx6c595j000-wo8r');
  });
  it.each(['relative/path', '/a/../b', '/a/./b', '//a', '/'])('path %j is refused', (p) => {
    expect(kindOf(() => checkHostPath(p, 'target_path'))).toMatch(/^invalid-argument: target_path/);
  });
  it('a trailing slash is dropped', () => {
    expect(checkHostPath(`${dir}/t/`, 'target_path')).toBe(`${dir}/t`);
  });
  it('a path through a symlinked parent, or a symlink itself, is refused', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    symlinkSync('/etc', join(dir, 'real', 'planted'));
    expect(kindOf(() => checkHostPath(join(dir, 'link', 'target'), 'target_path'))).toMatch(/symlink/);
    expect(kindOf(() => checkHostPath(join(dir, 'real', 'planted'), 'target_path'))).toMatch(/is a symlink/);
    expect(checkHostPath(join(dir, 'real', 'target'), 'target_path')).toBe(join(dir, 'real', 'target'));
  });
  it('a symlink above directories that do not exist yet is refused, naming where it is', () => {
    mkdirSync(join(dir, 'pods'));
    symlinkSync('/etc', join(dir, 'pods', 'uid'));
    expect(kindOf(() => checkHostPath(join(dir, 'pods', 'uid', 'volumes', 'v', 'mount'), 'target_path'))).toBe(
      `invalid-argument: target_path: "${join(dir, 'pods', 'uid', 'volumes', 'v', 'mount')}" goes through a symlink (${join(dir, 'pods', 'uid')})`,
    );
  });
});

describe('capabilities', () => {
  it('multi-node modes are refused with a clear message', () => {
    expect(kindOf(() => parseCapability(mount(Mode.MULTI_NODE_MULTI_WRITER), 'volume_capability'))).toMatch(/multi-node mode; berth-csi volumes live on one node/);
  });
  it('a capability without access mode or access type is refused naming the part', () => {
    expect(kindOf(() => parseCapability({ mount: { fsType: '', mountFlags: [], volumeMountGroup: '' } }, 'c'))).toMatch(/c.access_mode: is required/);
    expect(kindOf(() => parseCapability({ accessMode: { mode: Mode.SINGLE_NODE_WRITER } }, 'c'))).toMatch(/one of block or mount/);
  });
});
