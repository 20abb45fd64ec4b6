import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RecursiveReadOnlyMounts } from '../../../../cri-shim/pod/rro-mounts.js';
import { BerthError } from '../../../../lib/errors.js';
import { Mount as CriMount } from '../../../../proto/gen/runtime/v1/api.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const unsupported = { supported: false, reason: 'this kernel cannot make recursive read-only mounts (mount_setattr(2): ENOSYS; it needs Linux 5.12 or later)' };

describe('RecursiveReadOnlyMounts without kernel support', () => {
  it('refuses a recursive read-only mount with FailedPrecondition saying why, and stages nothing', () => {
    const root = join(mkdtempSync(join(tmpdir(), 'berth-rro-')), 'rro');
    dirs.push(root);
    const rro = new RecursiveReadOnlyMounts(root, unsupported);
    let err: unknown;
    try {
      rro.stage('c1', [CriMount.fromPartial({ containerPath: '/d', hostPath: '/tmp', readonly: true, recursiveReadOnly: true })]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('failed-precondition');
    expect((err as BerthError).message).toMatch(/^config\.mounts\[0\]\.recursive_read_only: .*mount_setattr.*ENOSYS/);
    expect(existsSync(root)).toBe(false);
  });

  it('mounts without recursive_read_only need nothing from the kernel', () => {
    const rro = new RecursiveReadOnlyMounts('/nonexistent/rro', unsupported);
    expect(rro.stage('c1', [CriMount.fromPartial({ containerPath: '/d', hostPath: '/tmp', readonly: true })]).size).toBe(0);
    expect(rro.removeOrphans(new Set())).toEqual([]);
  });
});
