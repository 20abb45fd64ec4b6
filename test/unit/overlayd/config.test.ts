import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../../overlayd/config.js';
import { errorOf } from './fixtures.js';

describe('berth-overlayd flags', () => {
  it('reads flags over environment over the YAML file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'overlayd-args-'));
    try {
      const file = join(dir, 'c.yaml');
      writeFileSync(file, 'leaseStore: etcd\netcdPrefix: /from/file\nresyncInterval: 30s\n');
      const c = parseArgs(['--config', file, '--etcd-endpoints', 'http://10.0.0.1:2379,http://10.0.0.2:2379', '--ip-masq', '--iface', 'eth1', '--iface', 'eth2'], { BERTH_OVERLAY_ETCD_PREFIX: '/from/env', BERTH_OVERLAY_LEASE_TTL: '90s' });
      expect(c).toMatchObject({ leaseStore: 'etcd', etcdPrefix: '/from/env', etcdEndpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], ipMasq: true, iface: ['eth1', 'eth2'], resyncInterval: 30_000, leaseTtl: 90_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says what is wrong', () => {
    expect(errorOf(() => parseArgs(['--lease-store', 'consul'], {}))).toMatch(/leaseStore/);
    expect(errorOf(() => parseArgs(['--bogus', 'x'], {}))).toMatch(/unknown flag --bogus/);
    expect(errorOf(() => parseArgs(['--lease-store', 'file'], {}))).toMatch(/networkConfig: required with the file lease store/);
    expect(errorOf(() => parseArgs(['--lease-store', 'kube', '--network-config', '/x'], {}))).toMatch(/nodeName: required/);
    expect(errorOf(() => parseArgs(['--resync-interval', 'soon'], {}))).toMatch(/resyncInterval: expected a duration/);
    expect(errorOf(() => parseArgs(['--iface-regex', '(', '--network-config', '/x'], {}))).toMatch(/ifaceRegex/);
    expect(parseArgs(['--help'], {})).toBe('help');
    expect(parseArgs(['--lease-store', 'kube', '--network-config', '/x'], { NODE_NAME: 'n1' })).toMatchObject({ nodeName: 'n1' });
  });
});
