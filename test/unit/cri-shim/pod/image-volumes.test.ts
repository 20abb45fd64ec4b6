import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { criMount } from '../../../../cri-shim/oci/mounts.js';
import {
  containerOfImageVolumeKey,
  imageVolumeKey,
  imageVolumeLabels,
  planImageVolumes,
  resolveSubPath,
  withImageVolumeSources,
} from '../../../../cri-shim/pod/image-volumes.js';
import type { ImageEntry } from '../../../../cri-shim/store/image-store.js';
import { ContainerConfig, ImageSpec, Mount } from '../../../../proto/gen/runtime/v1/api.js';

const image = { id: 'sha256:' + 'c'.repeat(64), topChainId: 'sha256:' + 'd'.repeat(64) } as ImageEntry;
const find = (ref: string): ImageEntry | undefined => (ref === 'reg.test/data:1' ? image : undefined);
const volume = (over: Partial<Mount> = {}): Mount => Mount.fromPartial({ containerPath: '/data', image: { image: 'reg.test/data:1' }, readonly: true, ...over });
const id = 'a'.repeat(64);

describe('image volumes: the plan', () => {
  it('picks the image mounts out of a container\'s mounts, each resolved to its image', () => {
    const plans = planImageVolumes([Mount.fromPartial({ containerPath: '/h', hostPath: '/tmp' }), volume({ imageSubPath: 'sub/dir/' })], find);
    expect(plans).toEqual([{ index: 1, image, subPath: 'sub/dir' }]);
  });

  it('an image berth does not have is NotFound naming the mount', () => {
    expect(() => planImageVolumes([volume({ image: ImageSpec.fromPartial({ image: 'reg.test/other:1' }) })], find)).toThrow(
      expect.objectContaining({ kind: 'not-found', message: expect.stringMatching(/^config.mounts\[0\].image: image "reg.test\/other:1" not found/) }),
    );
  });

  it('refuses an absolute sub path, a sub path without an image, and a host path beside an image', () => {
    expect(() => planImageVolumes([volume({ imageSubPath: '/etc' })], find)).toThrow(/config.mounts\[0\].image_sub_path: "\/etc" must be relative/);
    expect(() => planImageVolumes([Mount.fromPartial({ containerPath: '/x', hostPath: '/tmp', imageSubPath: 'a' })], find)).toThrow(/config.mounts\[0\].image_sub_path: set without/);
    expect(() => planImageVolumes([volume({ hostPath: '/tmp' })], find)).toThrow(/config.mounts\[0\].host_path: "\/tmp" set beside an image/);
  });

  it('names each view after its container and mount index, and keeps it alive by a gc.ref label', () => {
    const key = imageVolumeKey(id, 3);
    expect(key).toBe(`berth-imgvol-${id}-3`);
    expect(containerOfImageVolumeKey(key)).toBe(id);
    expect(containerOfImageVolumeKey('extract-123 sha256:abc')).toBeUndefined();
    expect(containerOfImageVolumeKey(id)).toBeUndefined();
    expect(imageVolumeLabels('overlayfs', [{ index: 3, imageId: image.id, key }])).toEqual({ 'containerd.io/gc.ref.snapshot.overlayfs/imgvol-3': key });
  });

  it('the spec gets a read-only bind of the mounted view, whatever the mount asked', () => {
    const config = ContainerConfig.fromPartial({ mounts: [volume({ readonly: false })] });
    const forSpec = withImageVolumeSources(config, new Map([[0, '/run/berth/cri/image-volumes/x/0/sub']]));
    expect(config.mounts[0]!.hostPath).toBe('');
    expect(criMount(forSpec.mounts[0]!, 0)).toEqual({ destination: '/data', type: 'bind', source: '/run/berth/cri/image-volumes/x/0/sub', options: ['rbind', 'rprivate', 'ro', 'nosuid', 'nodev'] });
    expect(() => criMount(config.mounts[0]!, 0)).toThrow(/config.mounts\[0\].image: the image volume was not mounted/);
  });
});

describe('image volumes: the sub path', () => {
  let root = '';
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function tree(): string {
    root = realpathSync(mkdtempSync(join(tmpdir(), 'berth-imgvol-')));
    mkdirSync(join(root, 'etc/conf'), { recursive: true });
    writeFileSync(join(root, 'etc/conf/a.txt'), 'a');
    symlinkSync('etc/conf', join(root, 'inside'));
    symlinkSync('../../..', join(root, 'etc/up'));
    symlinkSync('/etc', join(root, 'absolute'));
    return root;
  }

  it('resolves a sub path below the root, through symlinks that stay inside', () => {
    const r = tree();
    expect(resolveSubPath(r, '', 0)).toBe(r);
    expect(resolveSubPath(r, 'etc/conf', 0)).toBe(join(r, 'etc/conf'));
    expect(resolveSubPath(r, 'inside/a.txt', 0)).toBe(join(r, 'etc/conf/a.txt'));
    expect(resolveSubPath(r, 'etc/conf/../conf', 0)).toBe(join(r, 'etc/conf'));
  });

  it('a missing sub path is NotFound, one that leads out is InvalidArgument, both naming it', () => {
    const r = tree();
    expect(() => resolveSubPath(r, 'etc/missing', 2)).toThrow(expect.objectContaining({ kind: 'not-found', message: 'config.mounts[2].image_sub_path: "etc/missing" does not exist in the image' }));
    expect(() => resolveSubPath(r, 'etc/conf/a.txt/x', 2)).toThrow(expect.objectContaining({ kind: 'not-found' }));
    for (const escaping of ['..', 'etc/../..', 'etc/up', 'absolute']) {
      expect(() => resolveSubPath(r, escaping, 2)).toThrow(expect.objectContaining({ kind: 'invalid-argument', message: `config.mounts[2].image_sub_path: "${escaping}" leads out of the image's root` }));
    }
  });
});
