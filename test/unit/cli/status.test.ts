import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatStatus, statusHealthy, type NodeStatus } from '../../../cli/status.js';
import { metricValue, parseConfigArgs, parseMetrics } from '../../../cli/probes.js';
import { readJournalRecords } from '../../../csi-driver/store/journal.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-status-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runningNode(): NodeStatus {
  return {
    berthVersion: '0.1.0',
    config: { path: '/etc/berth/berth.yaml' },
    berthd: { address: '127.0.0.1:9400', running: true, residentBytes: 120 * 1024 ** 2 },
    containerd: { socket: '/run/containerd/containerd.sock', version: 'v1.6.20' },
    components: [
      { name: 'cri', state: 'ready', readiness: 'ok', restarts: 0, startFailures: 0, sockets: [{ role: 'CRI', path: '/run/berth/cri.sock', state: 'accepts', answer: 'berth-cri 0.1.0' }] },
      { name: 'csi', state: 'not ready', readiness: 'not ready: recovering', restarts: 2, startFailures: 0, sockets: [{ role: 'CSI', path: '/csi.sock', state: 'missing' }] },
    ],
    pods: { total: 3, ready: 2, containersRunning: 4 },
    volumes: { total: 5, published: 1, source: '/var/lib/berth/volumes/state' },
    gpus: { advertised: 8, healthy: 7, unhealthy: 1 },
  };
}

describe('berth status', () => {
  it('prints versions, a table of components with their sockets, and the counts', () => {
    const text = formatStatus(runningNode());
    expect(text).toContain('berthd: running on 127.0.0.1:9400, 120 MiB resident');
    expect(text).toContain('containerd: v1.6.20 at /run/containerd/containerd.sock');
    expect(text).toMatch(/^COMPONENT\s+STATE\s+RESTARTS\s+SOCKETS$/m);
    expect(text).toMatch(/^cri\s+ready\s+0\s+\/run\/berth\/cri\.sock \(berth-cri 0\.1\.0\)$/m);
    expect(text).toMatch(/^csi\s+not ready\s+2\s+\/csi\.sock \(missing\)$/m);
    expect(text).toContain('  csi: not ready: recovering');
    expect(text).toContain('pods: 3 (2 ready), containers running: 4');
    expect(text).toContain('volumes: 5 (1 published), from /var/lib/berth/volumes/state');
    expect(text).toContain('gpus: 8 advertised (7 healthy, 1 unhealthy)');
  });

  it('is healthy only when berthd answers and every component is ready with its sockets answering', () => {
    const s = runningNode();
    expect(statusHealthy(s)).toBe(false);
    s.components[1] = { ...s.components[1]!, state: 'ready', sockets: [{ role: 'CSI', path: '/csi.sock', state: 'accepts' }] };
    expect(statusHealthy(s)).toBe(true);
    s.berthd = { address: '127.0.0.1:9400', running: false, error: 'ECONNREFUSED' };
    expect(statusHealthy(s)).toBe(false);
    expect(formatStatus(s)).toContain('berthd: not running (nothing answers on 127.0.0.1:9400: ECONNREFUSED)');
  });

  it('reads berthd\'s metrics: labels, escapes and comments', () => {
    const samples = parseMetrics('# HELP berthd_component_up x\n# TYPE berthd_component_up gauge\nberthd_component_up{component="cri"} 1\nberthd_component_up{component="csi"} 0\nberth_gpu_devices{health="healthy",note="a \\"q\\""} 8\nprocess_resident_memory_bytes 1.5e+08\n');
    expect(metricValue(samples, 'berthd_component_up', { component: 'csi' })).toBe(0);
    expect(metricValue(samples, 'berth_gpu_devices', { health: 'healthy' })).toBe(8);
    expect(samples.find((s) => s.name === 'berth_gpu_devices')!.labels.note).toBe('a "q"');
    expect(metricValue(samples, 'process_resident_memory_bytes')).toBe(150_000_000);
    expect(metricValue(samples, 'berthd_component_up', { component: 'gpu' })).toBeUndefined();
  });

  it('takes --config FILE and --json, and refuses anything else', () => {
    expect(parseConfigArgs('status', '', ['--config', '/x.yaml', '--json'])).toEqual({ config: '/x.yaml', json: true });
    expect(parseConfigArgs('status', '', ['--config=/y.yaml'])).toEqual({ config: '/y.yaml', json: false });
    const stderr = process.stderr.write;
    process.stderr.write = () => true;
    try {
      expect(parseConfigArgs('status', '', ['--bogus'])).toBe(2);
      expect(parseConfigArgs('status', '', ['--config'])).toBe(2);
    } finally {
      process.stderr.write = stderr;
    }
  });

  it('counts CSI volumes from the journal without writing it, replaying the lines after state.json', () => {
    const state = join(dir, 'state');
    expect(readJournalRecords(state).size).toBe(0);
    mkdirSync(state);
    writeFileSync(join(state, 'state.json'), JSON.stringify({ generation: 3, records: { volume: { a: { id: 'a' }, b: { id: 'b' } } } }));
    writeFileSync(join(state, 'journal-3.log'), '{"op":"put","kind":"volume","id":"c","rec":{"id":"c"}}\n{"op":"del","kind":"volume","id":"a"}\n{"op":"put","kind":"vol');
    expect([...readJournalRecords(state).get('volume')!.keys()]).toEqual(['b', 'c']);
  });
});
