import { describe, expect, it } from 'vitest';
import { buildContainerSpec } from '../../../../cri-shim/oci/container-spec.js';
import { criMount, recursiveReadOnlyIndexes } from '../../../../cri-shim/oci/mounts.js';
import { ImageSpec, Mount as CriMount, MountPropagation } from '../../../../proto/gen/runtime/v1/api.js';
import { containerConfig, containerInput, errorOf } from './fixtures.js';

const rro = (overrides: Partial<CriMount> = {}): CriMount => CriMount.fromPartial({ containerPath: '/data', hostPath: '/h/data', readonly: true, recursiveReadOnly: true, ...overrides });

describe('recursive read-only mounts', () => {
  it('a recursive read-only mount binds the staged read-only copy, recursively, private and ro', () => {
    expect(criMount(rro(), 0, '/state/rro/c1/0')).toEqual({ destination: '/data', type: 'bind', source: '/state/rro/c1/0', options: ['rbind', 'rprivate', 'ro'] });
  });

  it('never hands runc the rro option it does not know', () => {
    const config = containerConfig({ mounts: [CriMount.fromPartial({ containerPath: '/a', hostPath: '/h/a', readonly: true }), rro({ containerPath: '/b' })] });
    const spec = buildContainerSpec(containerInput({ config, recursiveReadOnlySources: new Map([[1, '/stage/1']]) }));
    expect(spec.mounts?.find((m) => m.destination === '/a')).toEqual({ destination: '/a', type: 'bind', source: '/h/a', options: ['rbind', 'rprivate', 'ro'] });
    expect(spec.mounts?.find((m) => m.destination === '/b')?.source).toBe('/stage/1');
    expect(spec.mounts?.flatMap((m) => m.options ?? [])).not.toContain('rro');
  });

  it('is refused on a writable mount, naming the field', () => {
    const msg = errorOf(() => recursiveReadOnlyIndexes([rro({ readonly: false })]));
    expect(msg).toContain('config.mounts[0].recursive_read_only');
    expect(msg).toContain('readonly');
  });

  it('is refused with any propagation but private', () => {
    for (const propagation of [MountPropagation.PROPAGATION_HOST_TO_CONTAINER, MountPropagation.PROPAGATION_BIDIRECTIONAL]) {
      const msg = errorOf(() => recursiveReadOnlyIndexes([CriMount.fromPartial({ containerPath: '/x', hostPath: '/x' }), rro({ propagation })]));
      expect(msg).toContain('config.mounts[1].recursive_read_only');
      expect(msg).toContain(MountPropagation[propagation]);
    }
  });

  it('lists only the mounts that ask for it', () => {
    expect(recursiveReadOnlyIndexes([CriMount.fromPartial({ containerPath: '/x', hostPath: '/x', readonly: true }), rro(), rro()])).toEqual([1, 2]);
    expect(recursiveReadOnlyIndexes([])).toEqual([]);
    // An image volume's view is read-only with no submounts: nothing to stage.
    expect(recursiveReadOnlyIndexes([rro({ hostPath: '', image: ImageSpec.fromPartial({ image: 'img' }) })])).toEqual([]);
  });

  it('a spec built without the staged copy is an error, not a writable submount', () => {
    expect(() => buildContainerSpec(containerInput({ config: containerConfig({ mounts: [rro()] }) }))).toThrow(/recursive_read_only: no read-only copy/);
  });
});
