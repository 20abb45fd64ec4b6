import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../cri-shim/config.js';
import { parseArgs } from '../../../cri-shim/main-args.js';

describe('berth-cri configuration: pinned images and the pull progress timeout', () => {
  it('pins nothing beyond the sandbox image, and cancels stalled pulls after 5m, unless set', () => {
    expect(parseConfig({})).toMatchObject({ pinnedImages: [], imagePullProgressTimeout: 300_000 });
  });

  it('takes pinned-image patterns and names a bad one by its index, under berthd\'s section', () => {
    expect(parseConfig({ pinnedImages: ['registry.k8s.io/pause:3.10', 'quay.io/org/*', '*etcd*'] }).pinnedImages).toHaveLength(3);
    expect(() => parseConfig({ pinnedImages: ['ok', 'quay.io/*/app'] }, 'f')).toThrow(/^f: pinnedImages\[1\]: "quay.io\/\*\/app": a \* may only end/);
    expect(() => parseConfig({ pinnedImages: [''] }, '/etc/berth/berthd.yaml', 'cri')).toThrow(/\/etc\/berth\/berthd.yaml: cri.pinnedImages\[0\]: an empty pattern/);
    expect(() => parseConfig({ pinnedImages: 'pause' }, 'f')).toThrow(/pinnedImages/);
    const c = parseArgs(['--pinned-images', 'quay.io/org/*,*etcd*']);
    expect(c !== 'help' && c !== 'version' && c.pinnedImages).toEqual(['quay.io/org/*', '*etcd*']);
    expect(() => parseArgs(['--pinned-images', 'a*b'])).toThrow(/flags: pinnedImages\[0\]/);
  });

  it('takes the progress timeout as a duration (0 turns it off), also as a flag', () => {
    expect(parseConfig({ imagePullProgressTimeout: '90s' }).imagePullProgressTimeout).toBe(90_000);
    expect(parseConfig({ imagePullProgressTimeout: '1m' }).imagePullProgressTimeout).toBe(60_000);
    expect(parseConfig({ imagePullProgressTimeout: 0 }).imagePullProgressTimeout).toBe(0);
    expect(parseConfig({ imagePullProgressTimeout: '0s' }).imagePullProgressTimeout).toBe(0);
    const c = parseArgs(['--image-pull-progress-timeout', '0']);
    expect(c !== 'help' && c !== 'version' && c.imagePullProgressTimeout).toBe(0);
    const d = parseArgs(['--image-pull-progress-timeout', '2s']);
    expect(d !== 'help' && d !== 'version' && d.imagePullProgressTimeout).toBe(2000);
    expect(() => parseConfig({ imagePullProgressTimeout: '10ms' }, 'f', 'cri')).toThrow(/cri.imagePullProgressTimeout: at least 100ms/);
    expect(() => parseConfig({ imagePullProgressTimeout: 'soon' }, 'f')).toThrow(/imagePullProgressTimeout/);
    expect(() => parseConfig({ imagePullProgressTimeout: '1000h' }, 'f')).toThrow(/at most 24 days/);
  });
});
