import { describe, expect, it } from 'vitest';
import { applyCdiDevices, parseCdiSpec, requestedCdiDevices, resolveCdiDevices } from '../../../../cri-shim/oci/cdi.js';
import { buildContainerSpec } from '../../../../cri-shim/oci/container-spec.js';
import { containerConfig, containerInput, errorOf } from './fixtures.js';

const gpuYaml = `
cdiVersion: "0.6.0"
kind: "example.com/gpu"
containerEdits:
  env: ["GPU_DRIVER=1"]
  hooks:
    - hookName: createContainer
      path: /usr/bin/gpu-hook
      args: ["gpu-hook", "update"]
devices:
  - name: gpu0
    containerEdits:
      env: ["GPU=0"]
      deviceNodes:
        - path: /dev/gpu0
          type: c
          major: 195
          minor: 0
          permissions: rw
      mounts:
        - hostPath: /usr/lib/gpu
          containerPath: /usr/lib/gpu
          options: ["ro"]
  - name: gpu1
    containerEdits:
      deviceNodes:
        - path: /dev/gpu1
          hostPath: /dev/fuse
`;
const fpgaJson = JSON.stringify({ cdiVersion: '0.8.0', kind: 'vendor.io/fpga', devices: [{ name: 'f0', containerEdits: { env: ['FPGA=0'], additionalGids: [44] } }] });

describe('CDI', () => {
  it('parses YAML and JSON specs and checks version and kind', () => {
    expect(parseCdiSpec('/etc/cdi/gpu.yaml', gpuYaml).devices.map((d) => d.name)).toEqual(['gpu0', 'gpu1']);
    expect(parseCdiSpec('/etc/cdi/f.json', fpgaJson).kind).toBe('vendor.io/fpga');
    expect(errorOf(() => parseCdiSpec('/x.json', '{"cdiVersion":"0.9.0","kind":"a.b/c","devices":[]}'))).toMatch(/\/x\.json: unsupported cdiVersion/);
    expect(errorOf(() => parseCdiSpec('/x.json', '{"cdiVersion":"0.5.0","kind":"nokind","devices":[]}'))).toMatch(/kind/);
    expect(errorOf(() => parseCdiSpec('/x.yaml', 'a: [unclosed'))).toMatch(/\/x\.yaml: cannot parse/);
  });

  it('collects requested names from CDIDevices and cdi.k8s.io annotations', () => {
    expect(requestedCdiDevices([{ name: 'example.com/gpu=gpu0' }], { 'cdi.k8s.io/x': 'example.com/gpu=gpu1, example.com/gpu=gpu0', other: 'y' })).toEqual(['example.com/gpu=gpu0', 'example.com/gpu=gpu1']);
  });

  it('lets a later file override an earlier one for the same device', () => {
    const override = gpuYaml.replace('GPU=0', 'GPU=zero');
    const [d] = resolveCdiDevices(['example.com/gpu=gpu0'], [{ path: '/etc/cdi/gpu.yaml', content: gpuYaml }, { path: '/var/run/cdi/gpu.yaml', content: override }]);
    expect(d!.spec.path).toBe('/var/run/cdi/gpu.yaml');
    expect(d!.edits?.env).toEqual(['GPU=zero']);
  });

  it('names an unknown or malformed device, and the unreadable files', () => {
    const files = [{ path: '/etc/cdi/gpu.yaml', content: gpuYaml }, { path: '/etc/cdi/broken.json', content: '{' }];
    expect(errorOf(() => resolveCdiDevices(['example.com/gpu=gpu9'], files))).toMatch(/"example\.com\/gpu=gpu9".*broken\.json/);
    expect(errorOf(() => resolveCdiDevices(['gpu9'], files))).toMatch(/not a fully-qualified name/);
    expect(resolveCdiDevices(['example.com/gpu=gpu0'], files)).toHaveLength(1);
  });

  it('applies spec and device edits to a container spec', () => {
    const config = containerConfig({ CDIDevices: [{ name: 'example.com/gpu=gpu0' }], annotations: { 'cdi.k8s.io/fpga': 'vendor.io/fpga=f0' } });
    const spec = buildContainerSpec(containerInput({ config, cdiSpecs: [{ path: '/etc/cdi/gpu.yaml', content: gpuYaml }, { path: '/etc/cdi/fpga.json', content: fpgaJson }] }));
    expect(spec.process?.env).toEqual(expect.arrayContaining(['GPU_DRIVER=1', 'GPU=0', 'FPGA=0']));
    expect(spec.linux?.devices).toContainEqual({ path: '/dev/gpu0', type: 'c', major: 195, minor: 0 });
    expect(spec.linux?.resources?.devices).toContainEqual({ allow: true, type: 'c', major: 195, minor: 0, access: 'rw' });
    expect(spec.mounts).toContainEqual({ destination: '/usr/lib/gpu', type: 'bind', source: '/usr/lib/gpu', options: ['rbind', 'ro'] });
    expect(spec.hooks?.createContainer).toEqual([{ path: '/usr/bin/gpu-hook', args: ['gpu-hook', 'update'] }]);
    expect(spec.process?.user.additionalGids).toContain(44);
  });

  it('stats a device node that gives no major/minor', () => {
    const config = containerConfig({ CDIDevices: [{ name: 'example.com/gpu=gpu1' }] });
    const spec = buildContainerSpec(containerInput({ config, cdiSpecs: [{ path: '/etc/cdi/gpu.yaml', content: gpuYaml }] }));
    expect(spec.linux?.devices).toContainEqual({ path: '/dev/gpu1', type: 'c', major: 10, minor: 229 });
  });

  it('rejects an unknown requested device in CreateContainer', () => {
    const config = containerConfig({ CDIDevices: [{ name: 'example.com/gpu=nope' }] });
    expect(errorOf(() => buildContainerSpec(containerInput({ config, cdiSpecs: [{ path: '/etc/cdi/gpu.yaml', content: gpuYaml }] })))).toContain('example.com/gpu=nope');
  });

  it('leaves the spec alone when nothing is requested', () => {
    const spec = buildContainerSpec(containerInput());
    expect(applyCdiDevices(structuredClone(spec), [], () => undefined)).toEqual(spec);
  });
});
