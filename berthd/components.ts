// Each component's code, loaded only when the component is enabled: in the dist build every
// import below is a chunk of its own (scripts/build.mjs), so a berthd without the GPU component
// never reads the GPU code, nor one without the overlay etcd's client.
import type { ComponentFactory, ComponentName } from '../lib/component.js';

export async function loadComponent(name: ComponentName): Promise<ComponentFactory<unknown>> {
  switch (name) {
    case 'cri':
      return (await import('../cri-shim/component.js')).criComponent as ComponentFactory<unknown>;
    case 'csi':
      return (await import('../csi-driver/component.js')).csiComponent as ComponentFactory<unknown>;
    case 'gpu':
      return (await import('../device-plugin/component.js')).gpuComponent as ComponentFactory<unknown>;
    case 'overlay':
      return (await import('../overlayd/component.js')).overlayComponent as ComponentFactory<unknown>;
    case 'cnid':
      return (await import('../cni-plugins/cnid/component.js')).cnidComponent as ComponentFactory<unknown>;
  }
}
