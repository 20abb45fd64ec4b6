import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { launcherScript, releaseDistDirs } from '../../../../cli/install/release.js';
import { renderDefaultConfig } from '../../../../cli/install/render.js';
import { parseConfigText } from '../../../../cli/install/plan.js';
import { configSchema as csiSchema, driverName } from '../../../../csi-driver/config.js';
import { planVolume } from '../../../../csi-driver/server/volume-create.js';
import type { Capability } from '../../../../csi-driver/validate.js';
import { componentNames } from '../../../../lib/component.js';
import { VolumeCapability_AccessMode_Mode as Mode } from '../../../../proto/gen/csi.js';

// share/manifests and share/berth.yaml agree with the code they describe: the driver's name and
// socket, the StorageClass parameters berth-csi accepts, the runtime handlers of the default
// configuration. (test/integration/cli/install-manifests.test.ts runs kubectl over them.)

const repo = join(import.meta.dirname, '../../../..');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const objects: Obj[] = readdirSync(join(repo, 'share/manifests'))
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(join(repo, 'share/manifests', f), 'utf8')).map((d) => d.toJS() as Obj));
const ofKind = (kind: string): Obj[] => objects.filter((o) => o.kind === kind);
const template = readFileSync(join(repo, 'share/berth.yaml'), 'utf8');
const defaults = parseConfigText(template, 'share/berth.yaml');

describe('share/manifests agree with berth-csi and berth-cri', () => {
  it('every object has apiVersion, kind and a name', () => {
    expect(objects.length).toBeGreaterThan(10);
    for (const o of objects) expect([typeof o.apiVersion, typeof o.kind, typeof o.metadata?.name]).toEqual(['string', 'string', 'string']);
  });

  it('the CSIDriver is berth-csi\'s: no attach, pod info on mount, capacity, persistent and ephemeral volumes', () => {
    const [driver] = ofKind('CSIDriver');
    expect(driver!.metadata.name).toBe(driverName);
    expect(driver!.spec).toMatchObject({ attachRequired: false, podInfoOnMount: true, storageCapacity: true, fsGroupPolicy: 'File', volumeLifecycleModes: ['Persistent', 'Ephemeral'] });
  });

  it('each StorageClass names the driver, waits for the consumer, and has parameters berth-csi accepts', () => {
    const classes = ofKind('StorageClass');
    expect(classes.map((c) => c.parameters.type).sort()).toEqual(['block', 'directory', 'directory', 'filesystem', 'filesystem']);
    const config = csiSchema.parse({ nodeId: 'n' });
    for (const sc of classes) {
      expect(sc.provisioner).toBe(driverName);
      expect(sc.volumeBindingMode).toBe('WaitForFirstConsumer');
      const cap: Capability = { block: sc.parameters.type === 'block', fsType: '', mountFlags: [], mountGroup: '', mode: Mode.SINGLE_NODE_WRITER };
      // A root with project quotas, as the directory class needs; the unenforced class works without.
      const quota = sc.parameters.sizeEnforcement ? undefined : { device: '/dev/x', mountPoint: '/', fstype: 'xfs' };
      expect(planVolume(config, sc.parameters, [cap], quota).type, sc.metadata.name).toBe(sc.parameters.type);
    }
  });

  it('the VolumeSnapshotClass names the driver', () => {
    expect(ofKind('VolumeSnapshotClass').map((c) => c.driver)).toEqual([driverName]);
  });

  it('there is one RuntimeClass per runtime handler of the default configuration', () => {
    const handlers = Object.keys(defaults.components.cri!.runtimeHandlers).sort();
    expect(ofKind('RuntimeClass').map((r) => r.handler).sort()).toEqual(handlers);
    expect(ofKind('RuntimeClass').map((r) => r.metadata.name).sort()).toEqual(handlers);
  });

  it('the sidecars run per node against the node\'s berth-csi socket, with their ServiceAccount bound', () => {
    const [ds] = ofKind('DaemonSet');
    const socketDir = dirname(csiSchema.parse({ nodeId: 'n' }).endpoint.replace('unix://', ''));
    expect(dirname(defaults.components.csi!.endpoint.replace('unix://', ''))).toBe(socketDir);
    const spec = ds!.spec.template.spec;
    expect(spec.volumes).toEqual([{ name: 'socket-dir', hostPath: { path: socketDir, type: 'DirectoryOrCreate' } }]);
    const containers: Obj[] = spec.containers;
    expect(containers.map((c) => c.name)).toEqual(['csi-provisioner', 'csi-snapshotter', 'csi-resizer']);
    for (const c of containers) {
      expect(c.args).toContain('--csi-address=/csi/csi.sock');
      expect(c.volumeMounts).toEqual([{ name: 'socket-dir', mountPath: '/csi' }]);
      expect(c.args.join(' ')).not.toContain('--extra-create-metadata');
    }
    for (const name of ['csi-provisioner', 'csi-snapshotter']) {
      const c = containers.find((x) => x.name === name)!;
      expect(c.args).toContain('--node-deployment=true');
      expect(c.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    }
    const [sa] = ofKind('ServiceAccount');
    expect(spec.serviceAccountName).toBe(sa!.metadata.name);
    for (const binding of [...ofKind('ClusterRoleBinding'), ...ofKind('RoleBinding')]) {
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa!.metadata.name, namespace: sa!.metadata.namespace }]);
      expect(ofKind(binding.roleRef.kind).map((r) => r.metadata.name)).toContain(binding.roleRef.name);
    }
  });
});

describe('share/berth.yaml', () => {
  it('is a valid berthd configuration as shipped, with cri, csi and cnid on', () => {
    expect(Object.keys(defaults.components)).toEqual(['cri', 'csi', 'cnid']);
  });

  it('keeps its comments and stays valid with every component turned on', () => {
    const all = renderDefaultConfig(template, componentNames, 'node-9');
    expect(all).toContain('# The CRI runtime kubelet talks to');
    const config = parseConfigText(all, 'rendered');
    expect(Object.keys(config.components)).toEqual([...componentNames]);
    expect(config.components.csi?.nodeId).toBe('node-9');
  });
});

describe('the release layout', () => {
  it('scripts/release.mjs and berth install lay a release out alike', async () => {
    const script = (await import(join(repo, 'scripts/release.mjs'))) as { releaseDistDirs: string[]; launcherScript: string };
    expect(script.releaseDistDirs).toEqual(releaseDistDirs);
    expect(script.launcherScript).toBe(launcherScript);
    expect(releaseDistDirs).not.toContain('bench');
    expect(releaseDistDirs).not.toContain('demo');
  });
});
