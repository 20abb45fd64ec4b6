import * as z from 'zod';
import { BerthError } from '../lib/errors.js';
import { describeZodError, settingName } from '../lib/config-file.js';

// berth-gpu's settings: defaults, then the YAML file (--config), then environment variables
// (BERTH_GPU_*), then command-line flags. Validation errors name the field as a dotted path.

/** NVIDIA's default application-level Xids: the application's fault, not the GPU's. */
export const defaultIgnoredXids = [13, 31, 43, 45, 68, 109];

export const configSchema = z.strictObject({
  kubeletDir: z.string().startsWith('/', 'must be an absolute path').default('/var/lib/kubelet/device-plugins'),
  resourceName: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, 'must be a Kubernetes extended resource name like nvidia.com/gpu').default('nvidia.com/gpu'),
  backend: z.enum(['auto', 'nvml', 'nvidia-smi', 'fake']).default('auto'),
  /** The fake backend's directory: gpus.json, events, and dev/ (device nodes it creates). */
  fakeDir: z.string().startsWith('/').optional(),
  /** Socket file name under kubeletDir. */
  socketName: z.string().regex(/^[A-Za-z0-9._-]+\.sock$/).default('berth-gpu.sock'),
  /** How containers get their GPUs; several may be combined. */
  deviceListStrategy: z.array(z.enum(['envvar', 'device-specs', 'cdi'])).min(1).default(['envvar', 'device-specs']),
  /** Where berth-gpu writes its CDI spec (the `cdi` strategy). */
  cdiSpecDir: z.string().startsWith('/').default('/var/run/cdi'),
  /** CDI kind: device names are `<cdiKind>=<uuid>`. */
  cdiKind: z.string().regex(/^[a-z0-9.-]+\/[a-z0-9_.-]+$/).default('nvidia.com/gpu'),
  preStartRequired: z.boolean().default(false),
  getPreferredAllocationAvailable: z.boolean().default(true),
  health: z
    .strictObject({
      /** Xids that do not mark a device unhealthy (application errors). */
      ignoredXids: z.array(z.number().int().min(0)).default(defaultIgnoredXids),
      /** Double-bit ECC errors mark a device unhealthy; single-bit ones only when this is on. */
      singleBitEccUnhealthy: z.boolean().default(false),
      /** Seconds without a new event after which an unhealthy device is probed and, if it answers, healthy again (0: never). */
      recoveryQuietSeconds: z.number().min(0).default(300),
    })
    .default({ ignoredXids: defaultIgnoredXids, singleBitEccUnhealthy: false, recoveryQuietSeconds: 300 }),
  sharing: z
    .strictObject({
      timeSlicing: z
        .strictObject({
          /** Each GPU is advertised this many times (IDs `<uuid>::<n>`); 1 = no sharing. */
          replicas: z.number().int().min(1).max(64).default(1),
          /** Advertise shared GPUs as `<resourceName>.shared`. */
          renameByDefault: z.boolean().default(false),
          /** Refuse a container asking for more than one replica (it would get no more GPU). */
          failRequestsGreaterThanOne: z.boolean().default(false),
        })
        .default({ replicas: 1, renameByDefault: false, failRequestsGreaterThanOne: false }),
      /** GetPreferredAllocation for shared GPUs: spread replicas over GPUs, or pack them onto few. */
      allocationPolicy: z.enum(['spread', 'pack']).default('spread'),
    })
    .default({ timeSlicing: { replicas: 1, renameByDefault: false, failRequestsGreaterThanOne: false }, allocationPolicy: 'spread' }),
  /** host:port for /metrics and /healthz; empty = off. */
  metricsAddr: z.string().default('127.0.0.1:9402'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
});

export type GpuConfig = z.infer<typeof configSchema>;

export function parseConfig(raw: unknown, source = 'config', section?: string): GpuConfig {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new BerthError('invalid-config', describeZodError(result.error, source, section));
  const config = result.data;
  if (config.backend === 'fake' && !config.fakeDir) throw new BerthError('invalid-config', `${source}: ${settingName(section, 'fakeDir')} is required with backend fake (--fake-dir DIR)`);
  return config;
}

/** The resource name kubelet sees, after time-slicing's renameByDefault. */
export function advertisedResource(config: GpuConfig): string {
  const ts = config.sharing.timeSlicing;
  return ts.replicas > 1 && ts.renameByDefault ? `${config.resourceName}.shared` : config.resourceName;
}
