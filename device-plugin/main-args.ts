// berth-gpu's command line: flags over environment variables over the YAML file over the defaults.
import { BerthError } from '../lib/errors.js';
import { loadConfigFile, splitFlags } from '../lib/config-file.js';
import { parseConfig, type GpuConfig } from './config.js';
import { berthVersion } from '../lib/version.js';

export const usage = `berth-gpu ${berthVersion}: kubelet device plugin for NVIDIA GPUs (deviceplugin v1beta1)

Usage: berth-gpu [flags]

  --kubelet-dir DIR        kubelet's device plugin directory (default /var/lib/kubelet/device-plugins)
  --resource-name NAME     extended resource (default nvidia.com/gpu)
  --backend B              auto | nvml | nvidia-smi | fake (default auto: the first that works)
  --fake-dir DIR           the fake backend's directory (gpus.json, events, dev/)
  --config FILE            YAML settings (health, sharing, strategies...); see README
  --metrics-addr H:P       /metrics and /healthz (default 127.0.0.1:9402; "" turns them off)
  --log-level LEVEL        fatal|error|warn|info|debug|trace (default info)
  --version, --help

Environment: BERTH_GPU_KUBELET_DIR, BERTH_GPU_RESOURCE_NAME, BERTH_GPU_BACKEND,
BERTH_GPU_FAKE_DIR, BERTH_GPU_CONFIG, BERTH_GPU_METRICS_ADDR, BERTH_GPU_LOG_LEVEL (flags win).
SIGHUP reloads the configuration (an invalid one is logged and the running one kept) and
re-registers with kubelet. SIGTERM/SIGINT stop.
`;

const keys: Record<string, keyof GpuConfig> = {
  'kubelet-dir': 'kubeletDir',
  'resource-name': 'resourceName',
  backend: 'backend',
  'fake-dir': 'fakeDir',
  'metrics-addr': 'metricsAddr',
  'log-level': 'logLevel',
};

export interface ParsedArgs {
  /** Flags, environment and file merged and validated. */
  config: GpuConfig;
  /** What is needed to build the configuration again on SIGHUP. */
  reload: () => GpuConfig;
}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedArgs | 'help' | 'version' {
  const flags: Record<string, unknown> = {};
  let configFile = env.BERTH_GPU_CONFIG;
  const parsed = splitFlags(argv);
  if (typeof parsed === 'string') return parsed;
  for (const { name: arg, value } of parsed) {
    if (value === undefined) throw new BerthError('invalid-argument', `${arg}: a value is required (see --help)`);
    if (arg === '--config') {
      configFile = value;
      continue;
    }
    const key = keys[arg.replace(/^--/, '')];
    if (!key) throw new BerthError('invalid-argument', `unknown flag ${arg} (see --help)`);
    flags[key] = value;
  }
  const fromEnv: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(keys)) {
    const v = env[`BERTH_GPU_${flag.toUpperCase().replace(/-/g, '_')}`];
    if (v !== undefined) fromEnv[key] = v;
  }
  const build = (): GpuConfig => {
    const file = configFile ? loadConfigFile(configFile) : {};
    return parseConfig({ ...file, ...fromEnv, ...flags }, configFile ?? 'flags');
  };
  return { config: build(), reload: build };
}
