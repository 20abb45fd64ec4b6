import { parseDocument, stringify } from 'yaml';
import type { BerthdConfig } from '../../berthd/config.js';
import { componentNames, type ComponentName } from '../../lib/component.js';
import { unixPath } from '../../lib/config-file.js';

// The contents `berth install` writes, as pure functions of the release, the options and the
// configuration: the planner compares them with what is on disk.

/** First line of every file berth install generates: how uninstall and a rerun know it is ours. */
export const generatedMarker = '# Written by berth install';

/** The prefix the unit files in systemd/ name; rewritten to <prefix>/current on install. */
export const unitPrefix = '/usr/lib/berth';

/** A unit file with its berth paths pointing at the installed release. */
export function renderUnit(text: string, prefix: string): string {
  const current = `${prefix}/current`;
  return text
    .split('\n')
    .map((line) => (line.startsWith('#') ? line : line.replaceAll(`${unitPrefix}/`, `${current}/`)))
    .join('\n');
}

/** The unit files of each mode. Separate units: one per enabled component (cnid: its socket too). */
export function unitsFor(separate: boolean, components: readonly ComponentName[]): string[] {
  if (!separate) return ['berthd.service'];
  const names: Record<ComponentName, string[]> = {
    cri: ['berth-cri.service'],
    csi: ['berth-csi.service'],
    gpu: ['berth-gpu.service'],
    overlay: ['berth-overlayd.service'],
    cnid: ['berth-cnid.socket', 'berth-cnid.service'],
  };
  return componentNames.filter((c) => components.includes(c)).flatMap((c) => names[c]);
}

/** Every unit file berth may have installed (what uninstall and a mode switch look for). */
export const allUnits = ['berthd.service', ...unitsFor(true, componentNames)];

/** Units to enable/start: a socket-activated service is started by its socket. */
export function unitsToStart(units: readonly string[]): string[] {
  return units.filter((u) => !(u === 'berth-cnid.service' && units.includes('berth-cnid.socket')));
}

/**
 * /etc/berth/berth.yaml from the commented template (share/berth.yaml): comments kept, each
 * component enabled or not per `components`, csi.nodeId set to the node's name.
 */
export function renderDefaultConfig(template: string, components: readonly ComponentName[], nodeName: string): string {
  const doc = parseDocument(template);
  for (const name of componentNames) {
    if (!doc.has(name)) doc.set(name, {});
    doc.setIn([name, 'enabled'], components.includes(name));
  }
  doc.setIn(['csi', 'nodeId'], nodeName);
  return doc.toString({ lineWidth: 0 });
}

/** With separate units: the component's own --config file (its section without `enabled`). */
export function renderComponentConfig(name: ComponentName, raw: Record<string, unknown>): string {
  const section = { ...((raw[name] as Record<string, unknown> | undefined) ?? {}) };
  delete section.enabled;
  if (raw.logLevel !== undefined && section.logLevel === undefined && name !== 'cnid') section.logLevel = raw.logLevel;
  return `${generatedMarker} from /etc/berth/berth.yaml (section ${name}); edit that file and run berth install --separate-units again.\n${stringify(section)}`;
}

/** Environment file of a separate unit: the component reads its derived config. */
export const separateUnitEnv: Partial<Record<ComponentName, { file: string; variable: string }>> = {
  cri: { file: '/etc/default/berth-cri', variable: 'BERTH_CRI_ARGS' },
  csi: { file: '/etc/default/berth-csi', variable: 'BERTH_CSI_ARGS' },
  gpu: { file: '/etc/default/berth-gpu', variable: 'BERTH_GPU_ARGS' },
  overlay: { file: '/etc/default/berth-overlayd', variable: 'BERTH_OVERLAYD_ARGS' },
};

export function renderUnitEnv(name: ComponentName): string {
  const env = separateUnitEnv[name]!;
  return `${generatedMarker}: berth-${name === 'overlay' ? 'overlayd' : name}'s settings come from its section of /etc/berth/berth.yaml.\n${env.variable}="--config /etc/berth/${name}.yaml"\n`;
}

/** The overlay's network (flannel's net-conf.json shape), written only when absent. */
export function renderOverlayNetwork(podCidr: string): string {
  return `${JSON.stringify({ Network: podCidr, SubnetLen: 24, Backend: { Type: 'vxlan' } }, null, 2)}\n`;
}

/** Where the bridge network's host-local leases live: berth's own directory, removed by --purge. */
export const ipamDataDir = '/var/lib/berth/cni/networks';

/**
 * /etc/cni/net.d/10-berth.conflist: with the overlay, berth-overlay reading the overlay's subnet
 * file (it delegates to berth-bridge with the node's subnet); otherwise a bridge network on
 * --pod-cidr. Both end with portmap for hostPort and bandwidth for the pods' bandwidth
 * annotations (berth-cri passes them as the bandwidth capability).
 */
export function renderConflist(config: BerthdConfig, podCidr: string): string {
  const overlay = config.components.overlay;
  const main = overlay
    ? { type: 'berth-overlay', subnetFile: overlay.subnetFile, dataDir: '/var/lib/berth/cni/overlay', delegate: { hairpinMode: true, isDefaultGateway: true } }
    : {
        type: 'berth-bridge',
        bridge: 'berth0',
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'berth-host-local', ranges: [[{ subnet: podCidr }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDataDir },
      };
  const list = {
    cniVersion: '1.0.0',
    name: 'berth',
    plugins: [main, { type: 'berth-portmap', capabilities: { portMappings: true }, snat: true }, { type: 'berth-bandwidth', capabilities: { bandwidth: true } }],
  };
  return `${JSON.stringify(list, null, 2)}\n`;
}

/** A conflist is berth's when it names the network "berth" and uses berth's plugins. */
export function isOurConflist(text: string): boolean {
  try {
    const list = JSON.parse(text) as { name?: unknown; plugins?: { type?: unknown }[] };
    return list.name === 'berth' && Array.isArray(list.plugins) && list.plugins.every((p) => typeof p.type === 'string' && p.type.startsWith('berth-'));
  } catch {
    return false;
  }
}

export function criEndpoint(config: BerthdConfig): string {
  return `unix://${unixPath(config.components.cri?.listen ?? 'unix:///run/berth/cri.sock', 'cri.listen')}`;
}

export function renderCrictl(config: BerthdConfig): string {
  const endpoint = criEndpoint(config);
  return `${generatedMarker}: crictl talks to berth's CRI runtime.\nruntime-endpoint: ${endpoint}\nimage-endpoint: ${endpoint}\ntimeout: 10\n`;
}

/** /etc/crictl.yaml is berth's when berth wrote it, or when it already points at berth's socket. */
export function isOurCrictl(text: string, config: BerthdConfig): boolean {
  if (text.startsWith(generatedMarker)) return true;
  const m = /^runtime-endpoint:\s*["']?([^"'\s]+)/m.exec(text);
  return m?.[1] === criEndpoint(config);
}

/** kubelet's side: a KubeletConfiguration drop-in (kubelet --config-dir) and the same as flags. */
export function renderKubelet(config: BerthdConfig): { dropIn: string; flags: string } {
  const endpoint = criEndpoint(config);
  const cgroupDriver = config.components.cri?.cgroupDriver ?? 'cgroupfs';
  const notes = [
    `# kubelet finds berth-gpu in ${config.components.gpu?.kubeletDir ?? '/var/lib/kubelet/device-plugins'} and berth-csi's registration in`,
    `# ${config.components.csi?.registrationDir ?? '/var/lib/kubelet/plugins_registry'}: kubelet's defaults under --root-dir=/var/lib/kubelet; keep them so.`,
  ];
  const dropIn = [
    `${generatedMarker}: kubelet's settings for berth. Put this file in kubelet's --config-dir`,
    '# (e.g. /etc/kubernetes/kubelet.conf.d/) or merge its fields into kubelet\'s --config file.',
    ...notes,
    'apiVersion: kubelet.config.k8s.io/v1beta1',
    'kind: KubeletConfiguration',
    `containerRuntimeEndpoint: ${endpoint}`,
    `imageServiceEndpoint: ${endpoint}`,
    `cgroupDriver: ${cgroupDriver}`,
    '',
  ].join('\n');
  const flags = [
    `${generatedMarker}: the same as kubelet flags (e.g. EnvironmentFile= of kubelet's unit).`,
    `KUBELET_EXTRA_ARGS="--container-runtime-endpoint=${endpoint} --image-service-endpoint=${endpoint} --cgroup-driver=${cgroupDriver}"`,
    '',
  ].join('\n');
  return { dropIn, flags };
}
