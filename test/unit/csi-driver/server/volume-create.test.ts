import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../../csi-driver/config.js';
import { planVolume } from '../../../../csi-driver/server/volume-create.js';
import { parseCapability } from '../../../../csi-driver/validate.js';
import { VolumeCapability_AccessMode_Mode as Mode } from '../../../../proto/gen/csi.js';
import { kindOf, mount } from '../fixtures.js';

const config = parseConfig({ nodeId: 'n1' });

describe('volume plans', () => {
  const block = { block: {}, accessMode: { mode: Mode.SINGLE_NODE_WRITER } };

  it('a block capability plans a block volume; the configured default otherwise', () => {
    expect(planVolume(config, {}, [parseCapability(block, 'c')], undefined)).toEqual({ type: 'block', sizeEnforced: true });
    expect(planVolume(config, {}, [parseCapability(mount(), 'c')], undefined)).toEqual({ type: 'filesystem', fsType: 'ext4', sizeEnforced: true });
  });
  it('fsType comes from the parameters, else the capability', () => {
    expect(planVolume(config, { fsType: 'xfs' }, [parseCapability(mount(), 'c')], undefined).fsType).toBe('xfs');
    expect(planVolume(config, {}, [parseCapability(mount(Mode.SINGLE_NODE_WRITER, 'xfs'), 'c')], undefined).fsType).toBe('xfs');
    expect(kindOf(() => planVolume(config, { fsType: 'ext4' }, [parseCapability(mount(Mode.SINGLE_NODE_WRITER, 'xfs'), 'c')], undefined))).toMatch(/contradicts/);
  });
  it('directory volumes: enforced with a quota filesystem, refused or unenforced without', () => {
    const caps = [parseCapability(mount(), 'c')];
    expect(planVolume(config, { type: 'directory' }, caps, { device: '/dev/x', mountPoint: '/', fstype: 'xfs' }).sizeEnforced).toBe(true);
    expect(kindOf(() => planVolume(config, { type: 'directory' }, caps, undefined))).toMatch(/^failed-precondition: directory volumes need project quotas/);
    expect(planVolume(config, { type: 'directory', sizeEnforcement: 'unenforced' }, caps, undefined).sizeEnforced).toBe(false);
  });
  it('unknown parameters and types are named', () => {
    const caps = [parseCapability(mount(), 'c')];
    expect(kindOf(() => planVolume(config, { tpye: 'directory' }, caps, undefined))).toMatch(/parameters.tpye: unknown parameter/);
    expect(kindOf(() => planVolume(config, { type: 'nfs' }, caps, undefined))).toMatch(/parameters.type: "nfs"/);
    // external-provisioner's own keys pass through.
    expect(planVolume(config, { 'csi.storage.k8s.io/pvc/name': 'x' }, caps, undefined).type).toBe('filesystem');
  });
  it('block and mount access in one request is refused', () => {
    expect(kindOf(() => planVolume(config, {}, [parseCapability(mount(), 'a'), parseCapability(block, 'b')], undefined))).toMatch(/^invalid-argument: volume_capabilities/);
  });
});
