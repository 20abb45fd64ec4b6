// berth-cri: the CRI runtime (runtime.v1 RuntimeService + ImageService) over containerd and runc.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { BerthError, errorMessage } from '../lib/errors.js';
import { serveUnix } from '../lib/grpc.js';
import { createLogger } from '../lib/logger.js';
import { ImageServiceService, RuntimeServiceService } from '../proto/gen/runtime/v1/api.js';
import { loadConfigFile, parseConfig, unixPath, type CriConfig } from './config.js';
import { ContainerdClient } from './containerd/client.js';
import { recover } from './recover.js';
import { CriRuntime } from './runtime.js';
import { berthVersion } from './server/runtime-info.js';
import { imageService, runtimeService } from './server/service.js';

const usage = `berth-cri ${berthVersion}: Kubernetes CRI runtime over containerd and runc

Usage: berth-cri [flags]

  --listen ADDR               CRI socket (default unix:///run/berth/cri.sock)
  --containerd PATH           containerd's socket (default /run/containerd/containerd.sock)
  --namespace NAME            containerd namespace for berth's pods and images (default berth.io)
  --config FILE               YAML settings (the flags below override it); see README
  --root DIR / --state DIR    persistent / runtime state (default /var/lib/berth/cri, /run/berth/cri)
  --registry-config-dir DIR   containerd-style hosts.toml per registry host (default /etc/berth/certs.d)
  --cni-conf-dir DIR          CNI network configurations (default /etc/cni/net.d)
  --cni-bin-dir DIR[:DIR]     CNI plugin directories (default /opt/cni/bin)
  --cni-cache-dir DIR         CNI result cache (default /var/lib/cni)
  --sandbox-image REF         pause image (default registry.k8s.io/pause:3.9)
  --runtime-handler NAME=BIN  add a runtime handler (RuntimeClass) running BIN (runc or crun)
  --cgroup-driver D           cgroupfs | systemd (default cgroupfs)
  --stream-address ADDR       streaming server address (default 127.0.0.1)
  --log-level LEVEL           fatal|error|warn|info|debug|trace (default info)
  --version, --help

Logs are JSON lines on stdout. SIGTERM/SIGINT stop serving; running containers keep running and
a restarted berth-cri finds them (and their logs) again.
`;

const flagKeys: Record<string, keyof CriConfig> = {
  '--listen': 'listen',
  '--containerd': 'containerd',
  '--namespace': 'namespace',
  '--root': 'root',
  '--state': 'state',
  '--registry-config-dir': 'registryConfigDir',
  '--cni-conf-dir': 'cniConfDir',
  '--cni-cache-dir': 'cniCacheDir',
  '--sandbox-image': 'sandboxImage',
  '--cgroup-driver': 'cgroupDriver',
  '--stream-address': 'streamAddress',
  '--log-level': 'logLevel',
};

export function parseArgs(argv: string[]): CriConfig | 'help' | 'version' {
  const flags: Record<string, unknown> = {};
  const handlers: Record<string, { binary: string }> = {};
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    let value: string | undefined;
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--version') return 'version';
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    } else {
      value = argv[++i];
    }
    if (value === undefined || value === '') throw new BerthError('invalid-argument', `${arg}: a value is required (see --help)`);
    if (arg === '--config') configFile = value;
    else if (arg === '--cni-bin-dir') flags.cniBinDir = value.split(':').filter(Boolean);
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

/** Type=notify: tell systemd we are serving (systemd-notify needs NotifyAccess=all). */
function notifyReady(): void {
  if (!process.env.NOTIFY_SOCKET) return;
  spawn('systemd-notify', ['--ready', `--pid=${process.pid}`], { stdio: 'ignore' }).on('error', () => undefined);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args === 'help') return void process.stdout.write(usage);
  if (args === 'version') return void process.stdout.write(`berth-cri ${berthVersion}\n`);
  const config = args;
  const log = createLogger({ name: 'berth-cri', level: config.logLevel });
  const socketPath = unixPath(config.listen, 'listen');
  mkdirSync(config.root, { recursive: true, mode: 0o711 });
  mkdirSync(config.state, { recursive: true, mode: 0o711 });

  const client = new ContainerdClient(config.containerd, config.namespace);
  for (let attempt = 1; ; attempt++) {
    try {
      await client.waitReady(5000);
      break;
    } catch (err) {
      if (attempt >= 12) throw err;
      log.warn({ containerd: config.containerd, err: errorMessage(err) }, 'waiting for containerd');
    }
  }
  const rt = new CriRuntime(config, client, log);
  const recovered = await recover(rt);
  log.info(recovered, 'state recovered from containerd');
  const server = await serveUnix(socketPath, [
    [RuntimeServiceService, runtimeService(rt, log)],
    [ImageServiceService, imageService(rt, log)],
  ]);
  log.info({ socket: socketPath, containerd: config.containerd, namespace: config.namespace }, 'berth-cri serving');
  notifyReady();

  const stop = (signal: string): void => {
    log.info({ signal }, 'stopping');
    void (async () => {
      await server.close();
      await Promise.all(rt.containers.all().map((c) => c.io?.detach()));
      client.close();
      process.exit(0);
    })();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`berth-cri: ${errorMessage(err)}\n`);
  process.exit(1);
});
