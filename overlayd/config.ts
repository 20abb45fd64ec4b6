import * as z from 'zod';
import { BerthError } from '../lib/errors.js';
import { describeZodError, settingName, durationMs as duration, loadConfigFile, splitFlags } from '../lib/config-file.js';
import { isIpAddress } from '../lib/ip.js';
import { berthVersion } from '../lib/version.js';

// berth-overlayd's settings: defaults, then the YAML file (--config), then environment
// variables (BERTH_OVERLAY_*), then flags. Errors name the field.

const boolText = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);

/** A list: YAML array, or comma-separated text (flags and environment). */
const stringList = z.union([z.array(z.string()), z.string().transform((s) => s.split(',').filter(Boolean))]);

export const configSchema = z.strictObject({
  leaseStore: z.enum(['etcd', 'kube', 'file']).default('file'),
  etcdEndpoints: stringList.pipe(z.array(z.string().regex(/^https?:\/\/[^/]+$/, 'expected http(s)://host:port'))).default(['http://127.0.0.1:2379']),
  etcdCaFile: z.string().optional(),
  etcdCertFile: z.string().optional(),
  etcdKeyFile: z.string().optional(),
  etcdPrefix: z.string().regex(/^\/[^\s]*[^/\s]$/, 'expected an absolute key prefix without a trailing slash, like /berth.io/network').default('/berth.io/network'),
  /** JSON network config (flannel's net-conf.json shape): the file store's and kube store's config, etcd's seed. */
  networkConfig: z.string().optional(),
  /** How long an etcd lease lives without renewal. */
  leaseTtl: duration.default(24 * 3_600_000),
  /** The file store's state file (the single node's lease). */
  leaseFile: z.string().default('/var/lib/berth/overlay/lease.json'),
  nodeName: z.string().optional(),
  kubeconfig: z.string().optional(),
  iface: stringList.default([]),
  ifaceRegex: stringList.default([]),
  publicIp: z.string().refine(isIpAddress, 'expected an IP address').optional(),
  subnetFile: z.string().default('/run/berth/subnet.env'),
  healthzAddr: z.string().regex(/^(\[[^\]]+\]|[^:]+):\d+$/, 'expected HOST:PORT').or(z.literal('')).default('127.0.0.1:9403'),
  ipMasq: boolText.default(false),
  masqBackend: z.enum(['iptables', 'nftables']).optional(),
  /** Release the lease on SIGTERM instead of keeping it for a restart. */
  removeOnExit: boolText.default(false),
  /** Full comparison of the data plane with the leases (repairs drift). */
  resyncInterval: duration.default(10_000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
});

export type OverlaydConfig = z.infer<typeof configSchema>;

export function parseConfig(raw: unknown, source: string, section?: string): OverlaydConfig {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new BerthError('invalid-config', describeZodError(result.error, source, section));
  const c = result.data;
  for (const re of c.ifaceRegex) {
    try {
      new RegExp(re);
    } catch (err) {
      throw new BerthError('invalid-config', `${source}: ${settingName(section, 'ifaceRegex')}: ${JSON.stringify(re)} is not a regular expression: ${(err as Error).message}`);
    }
  }
  if (c.leaseStore !== 'etcd' && !c.networkConfig) throw new BerthError('invalid-config', `${source}: ${settingName(section, 'networkConfig')}: required with the ${c.leaseStore} lease store (--network-config FILE)`);
  if (c.leaseStore === 'kube' && !c.nodeName) throw new BerthError('invalid-config', `${source}: ${settingName(section, 'nodeName')}: required with the kube lease store (--node-name or $NODE_NAME)`);
  if ((c.etcdCertFile === undefined) !== (c.etcdKeyFile === undefined)) throw new BerthError('invalid-config', `${source}: ${settingName(section, 'etcdCertFile')} and etcdKeyFile go together`);
  return c;
}

export const usage = `berth-overlayd ${berthVersion}: VXLAN overlay for pod networks (flannel-like)

Usage: berth-overlayd [flags]

  --lease-store S          etcd | kube | file (default file: a single node, no cluster)
  --etcd-endpoints URLS    comma-separated (default http://127.0.0.1:2379)
  --etcd-cafile F, --etcd-certfile F, --etcd-keyfile F   TLS for etcd
  --etcd-prefix P          key prefix (default /berth.io/network)
  --network-config FILE    network config JSON (Network, SubnetLen, Backend...): the file and
                           kube stores' config; seeds etcd when <prefix>/config is absent
  --lease-ttl D            etcd lease lifetime without renewal (default 24h)
  --lease-file F           the file store's state (default /var/lib/berth/overlay/lease.json)
  --node-name N            this node (kube store; default $NODE_NAME)
  --kubeconfig F           kube store: kubeconfig (default: in-cluster config)
  --iface NAME|IP          underlay interface (repeatable, comma-separated; first that exists)
  --iface-regex RE         underlay interface by name or address pattern
  --public-ip IP           the address other nodes reach this one at (default: the interface's)
  --subnet-file F          where the node's subnet is written (default /run/berth/subnet.env)
  --healthz-addr H:P       /healthz, /readyz, /metrics (default 127.0.0.1:9403; "" turns off)
  --ip-masq                masquerade traffic leaving the cluster network
  --masq-backend B         iptables | nftables (default: iptables where installed)
  --remove-on-exit         give the lease back on SIGTERM (default: keep it for a restart)
  --resync-interval D      full data plane check that repairs drift (default 10s)
  --config FILE            YAML with the same settings in camelCase (leaseStore, etcdEndpoints...)
  --log-level LEVEL        fatal|error|warn|info|debug|trace (default info)
  --version, --help

Environment: BERTH_OVERLAY_<FLAG> (e.g. BERTH_OVERLAY_LEASE_STORE), NODE_NAME; flags win.
SIGTERM/SIGINT stop cleanly: masquerade rules are removed, the lease is kept unless
--remove-on-exit, routes to other nodes stay until the next start repairs them.
`;

const flagKeys: Record<string, keyof OverlaydConfig> = {
  'lease-store': 'leaseStore',
  'etcd-endpoints': 'etcdEndpoints',
  'etcd-cafile': 'etcdCaFile',
  'etcd-certfile': 'etcdCertFile',
  'etcd-keyfile': 'etcdKeyFile',
  'etcd-prefix': 'etcdPrefix',
  'network-config': 'networkConfig',
  'lease-ttl': 'leaseTtl',
  'lease-file': 'leaseFile',
  'node-name': 'nodeName',
  kubeconfig: 'kubeconfig',
  iface: 'iface',
  'iface-regex': 'ifaceRegex',
  'public-ip': 'publicIp',
  'subnet-file': 'subnetFile',
  'healthz-addr': 'healthzAddr',
  'ip-masq': 'ipMasq',
  'masq-backend': 'masqBackend',
  'remove-on-exit': 'removeOnExit',
  'resync-interval': 'resyncInterval',
  'log-level': 'logLevel',
};
const switches = new Set(['--ip-masq', '--remove-on-exit']);
const repeatable = new Set<keyof OverlaydConfig>(['iface', 'ifaceRegex']);

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): OverlaydConfig | 'help' | 'version' {
  const parsed = splitFlags(argv, switches);
  if (typeof parsed === 'string') return parsed;
  const flags: Record<string, unknown> = {};
  let configFile = env.BERTH_OVERLAY_CONFIG;
  for (const { name, value } of parsed) {
    if (name === '--config') {
      if (value === undefined) throw new BerthError('invalid-argument', '--config: a value is required (see --help)');
      configFile = value;
      continue;
    }
    const key = flagKeys[name.replace(/^--/, '')];
    if (!key || !name.startsWith('--')) throw new BerthError('invalid-argument', `unknown flag ${name} (see --help)`);
    if (switches.has(name)) {
      flags[key] = value ?? true;
      continue;
    }
    if (value === undefined) throw new BerthError('invalid-argument', `${name}: a value is required (see --help)`);
    if (repeatable.has(key)) flags[key] = [...((flags[key] as string[] | undefined) ?? []), ...value.split(',').filter(Boolean)];
    else flags[key] = value;
  }
  const fromEnv: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(flagKeys)) {
    const v = env[`BERTH_OVERLAY_${flag.toUpperCase().replace(/-/g, '_')}`];
    if (v !== undefined && v !== '') fromEnv[key] = v;
  }
  if (env.NODE_NAME && fromEnv.nodeName === undefined) fromEnv.nodeName = env.NODE_NAME;
  const file = configFile ? loadConfigFile(configFile) : {};
  return parseConfig({ ...file, ...fromEnv, ...flags }, configFile ? `${configFile} + flags` : 'flags');
}
