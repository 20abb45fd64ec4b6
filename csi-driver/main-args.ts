// berth-csi's command line: flags over the YAML file over the defaults.
import { BerthError } from '../lib/errors.js';
import { loadConfigFile, splitFlags } from '../lib/config-file.js';
import { parseConfig, type CsiConfig } from './config.js';
import { berthVersion } from '../lib/version.js';

export const usage = `berth-csi ${berthVersion}: CSI driver for node-local volumes (local.csi.berth.io)

Usage: berth-csi --node-id NAME [flags]

  --endpoint ADDR           CSI socket (default unix:///var/lib/kubelet/plugins/local.csi.berth.io/csi.sock)
  --node-id NAME            this node's name, as kubelet knows it (required)
  --root DIR                volumes, snapshots and state (default /var/lib/berth/volumes)
  --config FILE             YAML settings (the flags override it); see README
  --kubelet-registration    register with kubelet's plugin watcher (no registrar sidecar needed)
  --registration-dir DIR    kubelet's plugin watcher directory (default /var/lib/kubelet/plugins_registry)
  --default-type TYPE       filesystem | directory (default filesystem)
  --default-fs-type FS      ext4 | xfs (default ext4)
  --directory-size-enforcement MODE
                            refuse | unenforced: directory volumes on a root without project
                            quotas (default refuse; a StorageClass may choose per class)
  --max-volumes-per-node N  reported to kubelet (default 0: no limit)
  --stats-walk-max-entries N, --stats-walk-max-depth N, --stats-walk-timeout-ms MS
                            bounds on the walk NodeGetVolumeStats makes of an unenforced
                            directory volume (default 1000000 entries, 128 levels, 10000 ms)
  --log-level LEVEL         fatal|error|warn|info|debug|trace (default info)
  --version, --help

Logs are JSON lines on stdout. SIGTERM/SIGINT stop serving; mounts stay, and a restarted
berth-csi picks up every volume, snapshot, staging and publication from its state journal.
`;

const valueFlags: Record<string, keyof CsiConfig> = {
  '--endpoint': 'endpoint',
  '--node-id': 'nodeId',
  '--root': 'root',
  '--registration-dir': 'registrationDir',
  '--default-type': 'defaultType',
  '--default-fs-type': 'defaultFsType',
  '--directory-size-enforcement': 'directorySizeEnforcement',
  '--max-volumes-per-node': 'maxVolumesPerNode',
  '--stats-walk-max-entries': 'statsWalkMaxEntries',
  '--stats-walk-max-depth': 'statsWalkMaxDepth',
  '--stats-walk-timeout-ms': 'statsWalkTimeoutMs',
  '--log-level': 'logLevel',
};
const numberFlags = new Set<keyof CsiConfig>(['maxVolumesPerNode', 'statsWalkMaxEntries', 'statsWalkMaxDepth', 'statsWalkTimeoutMs']);

export function parseArgs(argv: string[]): CsiConfig | 'help' | 'version' {
  const flags: Record<string, unknown> = {};
  let configFile: string | undefined;
  const parsed = splitFlags(argv, new Set(['--kubelet-registration']));
  if (typeof parsed === 'string') return parsed;
  for (const { name: arg, value } of parsed) {
    if (arg === '--kubelet-registration') {
      flags.kubeletRegistration = value === undefined ? true : value !== 'false';
      continue;
    }
    if (value === undefined || value === '') throw new BerthError('invalid-argument', `${arg}: a value is required (see --help)`);
    if (arg === '--config') {
      configFile = value;
      continue;
    }
    const key = valueFlags[arg];
    if (key === undefined) throw new BerthError('invalid-argument', `unknown flag ${arg} (see --help)`);
    flags[key] = numberFlags.has(key) ? Number(value) : value;
  }
  const file = configFile ? loadConfigFile(configFile) : {};
  return parseConfig({ ...file, ...flags }, configFile ?? 'flags');
}
