import * as z from 'zod';
import { BerthError } from '../lib/errors.js';
import { describeZodError, settingName, unixAddress } from '../lib/config-file.js';

// berth-csi's settings: defaults, then the YAML file (--config), then the command-line flags.

export const driverName = 'local.csi.berth.io';
export const topologyKey = 'topology.local.csi.berth.io/node';

const sizeEnforcement = z.enum(['refuse', 'unenforced']);

export const configSchema = z.strictObject({
  endpoint: unixAddress.default(`unix:///var/lib/kubelet/plugins/${driverName}/csi.sock`),
  /** The node's name as kubelet knows it (CSINode, topology). */
  nodeId: z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a node name: letters, digits, ".", "_", "-"'),
  /** Where volumes, snapshots and the state journal live. */
  root: z.string().startsWith('/', 'must be an absolute path').default('/var/lib/berth/volumes'),
  /** Volume type when the StorageClass names none (a block capability always means block). */
  defaultType: z.enum(['filesystem', 'directory']).default('filesystem'),
  defaultFsType: z.enum(['ext4', 'xfs']).default('ext4'),
  /** Size of a volume created without a capacity range. */
  defaultSizeBytes: z.number().int().min(1 << 20).default(1 << 30),
  /** Largest volume the driver creates (0: as large as the free space allows). */
  maxVolumeSizeBytes: z.number().int().min(0).default(0),
  /** Free space of the root kept out of GetCapacity and CreateVolume. */
  reservedBytes: z.number().int().min(0).default(0),
  /** directory volumes on a root without project quotas: refuse them, or create them unenforced. */
  directorySizeEnforcement: sizeEnforcement.default('refuse'),
  /** Project IDs berth-csi may hand out for directory quotas. */
  projectIdMin: z.number().int().min(1).default(2_000_000),
  projectIdMax: z.number().int().min(1).default(2_999_999),
  /** NodeGetInfo max_volumes_per_node (0: no limit). */
  maxVolumesPerNode: z.number().int().min(0).default(0),
  /** Pre-existing disks, partitions or directories that static volumes may name. */
  staticPathPrefixes: z.array(z.string().startsWith('/')).default(['/mnt/disks', '/dev/disk/by-id', '/dev/disk/by-path']),
  ephemeralDefaultType: z.enum(['filesystem', 'directory']).default('filesystem'),
  ephemeralDefaultSizeBytes: z.number().int().min(1 << 20).default(100 << 20),
  /** NodeGetVolumeStats of an unenforced directory volume walks the pod's tree: at most this many entries, */
  statsWalkMaxEntries: z.number().int().min(1).default(1_000_000),
  /** this many directory levels deep (one open directory per level), */
  statsWalkMaxDepth: z.number().int().min(1).max(1024).default(128),
  /** and this long; past any of them the usage is a lower bound and the volume condition says so. */
  statsWalkTimeoutMs: z.number().int().min(1).default(10_000),
  /** Serve kubelet's plugin registration (pluginregistration v1) so no registrar sidecar is needed. */
  kubeletRegistration: z.boolean().default(false),
  registrationDir: z.string().startsWith('/').default('/var/lib/kubelet/plugins_registry'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
});

export type CsiConfig = z.infer<typeof configSchema>;
export type SizeEnforcement = z.infer<typeof sizeEnforcement>;

export function parseConfig(raw: unknown, source = 'config', section?: string): CsiConfig {
  if (!(raw as Record<string, unknown> | undefined)?.nodeId) {
    throw new BerthError('invalid-config', `${source}: ${settingName(section, 'nodeId')} is required (--node-id NAME: this node's name as kubelet knows it)`);
  }
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new BerthError('invalid-config', describeZodError(result.error, source, section));
  const config = result.data;
  if (config.projectIdMin > config.projectIdMax) {
    throw new BerthError('invalid-config', `${source}: ${settingName(section, 'projectIdMin')} (${config.projectIdMin}) is above projectIdMax (${config.projectIdMax})`);
  }
  return config;
}
