import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileLeaseStore } from '../../../../overlayd/lease/file.js';

describe('the file lease store (one node)', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('leases the first subnet, keeps it across restarts, and gives it back on release', async () => {
    dir = mkdtempSync(join(tmpdir(), 'overlay-file-'));
    const conf = join(dir, 'net.json');
    writeFileSync(conf, '{"Network":"10.50.0.0/16","SubnetMin":"10.50.9.0"}');
    const attrs = { publicIP: '192.168.1.10', backendType: 'vxlan' as const, backendData: { vtepMAC: '0a:00:00:00:00:01', vni: 1 } };
    const opts = { networkConfigFile: conf, leaseFile: join(dir, 'state', 'lease.json') };
    const s1 = new FileLeaseStore(opts);
    const config = await s1.getNetworkConfig();
    expect((await s1.acquire(attrs, config)).subnet).toBe('10.50.9.0/24');
    const s2 = new FileLeaseStore(opts);
    expect((await s2.acquire(attrs, config, { subnet: '10.50.20.0/24' })).subnet).toBe('10.50.9.0/24');
    expect(await s2.list()).toHaveLength(1);
    await s2.release();
    const s3 = new FileLeaseStore(opts);
    expect((await s3.acquire(attrs, config, { subnet: '10.50.20.0/24' })).subnet).toBe('10.50.20.0/24');
    writeFileSync(conf, '{"Network":"10.50.0.0/16","SubnetLen":40}');
    await expect(new FileLeaseStore(opts).getNetworkConfig()).rejects.toThrow(/net\.json: SubnetLen/);
  });
});
