// berth-cri's command line: flags over the YAML file over the defaults.
import { BerthError } from '../lib/errors.js';
import { loadConfigFile, localPauseImage, parseConfig, type CriConfig } from './config.js';
import { splitFlags } from '../lib/config-file.js';
import { berthVersion } from '../lib/version.js';

export const usage = `berth-cri ${berthVersion}: Kubernetes CRI runtime over containerd and runc

Usage: berth-cri [flags]

  --listen ADDR               CRI socket (default unix:///run/berth/cri.sock)
  --containerd PATH           containerd's socket (default /run/containerd/containerd.sock)
  --containerd-state DIR      containerd's state directory, where its shims' addresses are
                              (default /run/containerd)
  --namespace NAME            containerd namespace for berth's pods and images (default berth.io)
  --config FILE               YAML settings (the flags below override it); see README
  --root DIR / --state DIR    persistent / runtime state (default /var/lib/berth/cri, /run/berth/cri)
  --registry-config-dir DIR   containerd-style hosts.toml per registry host (default /etc/berth/certs.d)
  --cni-conf-dir DIR          CNI network configurations (default /etc/cni/net.d)
  --cni-bin-dir DIR[:DIR]     CNI plugin directories (default /opt/cni/bin)
  --cni-cache-dir DIR         CNI result cache (default /var/lib/cni)
  --sandbox-image REF         pause image (default ${localPauseImage}: made from berth's own
                              pause binary, never pulled)
  --runtime-handler NAME=BIN  add a runtime handler (RuntimeClass) running BIN (runc or crun)
  --cgroup-driver D           cgroupfs | systemd (default cgroupfs)
  --stream-address ADDR       streaming server address (default 127.0.0.1)
  --stream-port PORT          streaming server port (default 0: a free port)
  --stream-tls-cert FILE      serve the streaming URLs over HTTPS with this certificate...
  --stream-tls-key FILE       ...and key (PEM)
  --max-manifest-size BYTES   largest manifest or index a pull reads (default 4194304)
  --max-image-config-size BYTES  largest image config a pull reads (default 8388608)
  --port-forward-connect-timeout-ms MS
                              give up a port-forward connect after MS ms (default 5000)
  --max-port-forward-ports N  ports per port-forward request (default 32, at most 128)
  --max-port-forward-streams N
                              connections at once per port-forward session (default 128)
  --stream-idle-timeout D     close a streaming connection idle this long (default 4h)
  --stream-max-concurrent-streams N  SPDY streams open at once per connection (default 256)
  --stream-max-message-size BYTES    largest WebSocket message from a client (default 4 MiB)
  --stream-attach-buffer-size BYTES  output an attached client may lag before it is dropped (default 4 MiB)
  --pinned-images P[,P]       images reported pinned: exact names, "prefix*" globs, "*keyword*"
                              (CRI-O's pinned_images); the sandbox image always is
  --image-pull-progress-timeout D
                              cancel a pull that receives nothing this long (default 5m, 0: never)
  --spare-rootfs-images N     images that keep a container rootfs prepared ahead for the next
                              CreateContainer (default 4, 0: none)
  --spare-rootfs-idle D       remove such a rootfs when not taken this long (default 5m)
  --log-level LEVEL           fatal|error|warn|info|debug|trace (default info)
  --metrics-addr H:P          serve /metrics and /healthz there (default "": off)
  --version, --help

Logs are JSON lines on stdout. SIGTERM/SIGINT stop serving; running containers keep running and
a restarted berth-cri finds them (and their logs) again.
`;

const flagKeys: Record<string, keyof CriConfig> = {
  '--listen': 'listen',
  '--containerd': 'containerd',
  '--containerd-state': 'containerdState',
  '--namespace': 'namespace',
  '--root': 'root',
  '--state': 'state',
  '--registry-config-dir': 'registryConfigDir',
  '--cni-conf-dir': 'cniConfDir',
  '--cni-cache-dir': 'cniCacheDir',
  '--sandbox-image': 'sandboxImage',
  '--cgroup-driver': 'cgroupDriver',
  '--stream-address': 'streamAddress',
  '--stream-port': 'streamPort',
  '--stream-tls-cert': 'streamTlsCert',
  '--stream-tls-key': 'streamTlsKey',
  '--max-manifest-size': 'maxManifestSize',
  '--max-image-config-size': 'maxImageConfigSize',
  '--port-forward-connect-timeout-ms': 'portForwardConnectTimeoutMs',
  '--max-port-forward-ports': 'maxPortForwardPorts',
  '--max-port-forward-streams': 'maxPortForwardStreams',
  '--stream-idle-timeout': 'streamIdleTimeout',
  '--stream-max-concurrent-streams': 'streamMaxConcurrentStreams',
  '--stream-max-message-size': 'streamMaxMessageSize',
  '--stream-attach-buffer-size': 'streamAttachBufferSize',
  '--image-pull-progress-timeout': 'imagePullProgressTimeout',
  '--spare-rootfs-images': 'spareRootfsImages',
  '--spare-rootfs-idle': 'spareRootfsIdle',
  '--log-level': 'logLevel',
  '--metrics-addr': 'metricsAddr',
};

export function parseArgs(argv: string[]): CriConfig | 'help' | 'version' {
  const flags: Record<string, unknown> = {};
  const handlers: Record<string, { binary: string }> = {};
  let configFile: string | undefined;
  const parsed = splitFlags(argv);
  if (typeof parsed === 'string') return parsed;
  for (const { name: arg, value } of parsed) {
    if (value === undefined || value === '') throw new BerthError('invalid-argument', `${arg}: a value is required (see --help)`);
    if (arg === '--config') configFile = value;
    else if (arg === '--cni-bin-dir') flags.cniBinDir = value.split(':').filter(Boolean);
    else if (arg === '--pinned-images') flags.pinnedImages = value.split(',').filter(Boolean);
    else if (arg === '--runtime-handler') {
      const [name, binary] = value.split('=');
      if (!name || !binary) throw new BerthError('invalid-argument', `--runtime-handler: "${value}" must be NAME=BINARY`);
      handlers[name] = { binary };
    } else {
      const key = flagKeys[arg];
      if (key === undefined) throw new BerthError('invalid-argument', `unknown flag ${arg} (see --help)`);
      flags[key] = value;
    }
  }
  const file = configFile ? loadConfigFile(configFile) : {};
  const merged: Record<string, unknown> = { ...file, ...flags };
  if (Object.keys(handlers).length) {
    merged.runtimeHandlers = { ...((file.runtimeHandlers as object | undefined) ?? { runc: { binary: 'runc' } }), ...handlers };
  }
  return parseConfig(merged, configFile ?? 'flags');
}

