import { execFile, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, credentials } from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as csi from '../../../proto/gen/csi.js';
import { BerthdNode as BerthdWorld } from '../../../world/berthd-node.js';
import { repoRoot } from '../../../world/cni.js';
import { startContainerd, type ContainerdWorld } from '../../../world/containerd.js';
import { csiCaller, mountCap } from '../../../world/csi.js';
import { isRoot } from '../../../world/netns.js';

// `berth doctor` and `berth status` as an operator runs them: the built CLI against a berthd
// running csi and cnid on this machine, with settings files of the test's own.

function berth(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(repoRoot, 'dist/cli/berth'), ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const skip = isRoot ? undefined : 'not root (berthd serves its sockets under /var/lib/berth-test)';
if (skip) console.log(`skipping berth doctor/status integration tests: ${skip}`);

describe.skipIf(skip !== undefined)('berth doctor and berth status against a running berthd', () => {
  let node: BerthdWorld;

  beforeAll(async () => {
    node = await BerthdWorld.start((dir) => ({
      csi: { nodeId: 'node-a', root: join(dir, 'csi-root'), endpoint: `unix://${join(dir, 'csi.sock')}`, directorySizeEnforcement: 'unenforced' },
      cnid: { socket: join(dir, 'cni.sock') },
    }));
  }, 60_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(node?.log().slice(-4000));
  });

  afterAll(async () => {
    await node?.stop();
  });

  it('doctor reports each enabled component ready and berthd\'s port as berth\'s; the exit status says whether anything failed', async () => {
    const r = await berth('doctor', '--config', node.configFile);
    expect(r.stdout).toContain(`ok    config: ${node.configFile}: csi, cnid enabled, berthd http on ${node.http}\n`);
    expect(r.stdout).toContain('ok    component csi: ready\n');
    expect(r.stdout).toContain('ok    component cnid: ready\n');
    expect(r.stdout).toMatch(new RegExp(`^ok    port ${node.http.split(':')[1]}: in use by berth \\(berthd http, ${node.http}\\): pid \\d+ .*berthd`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^(ok {4}|warn {2}|fail {2})disk .*csi\\.root ${node.dir}/csi-root`, 'm'));
    expect(r.stdout).toMatch(/^(ok {4}|warn {2})node runtime: Node v\d+/m);
    // Every line is a finding or its fix; what this machine lacks decides the verdict.
    const body = r.stdout.slice(0, r.stdout.lastIndexOf('\n\n'));
    for (const line of body.split('\n')) expect(line).toMatch(/^(ok {4}|warn {2}|fail {2})[a-z][^:]*: |^ {6}fix: /);
    const failed = /^fail {2}/m.test(r.stdout);
    expect(r.code).toBe(failed ? 1 : 0);
    expect(r.stdout).toMatch(failed ? /this node cannot run pods/ : /this node can run pods\n$/);

    const json = await berth('doctor', '--config', node.configFile, '--json');
    const doc = JSON.parse(json.stdout) as { canRunPods: boolean; checks: { status: string; name: string }[] };
    expect(doc.canRunPods).toBe(!failed);
    expect(doc.checks).toContainEqual(expect.objectContaining({ status: 'ok', name: 'component csi' }));
  });

  it('doctor fails a configuration whose containerd socket is missing, with the fix, and a component berthd does not run', async () => {
    const file = join(node.dir, 'with-cri.yaml');
    const missing = join(node.dir, 'no-containerd.sock');
    writeFileSync(file, stringify({
      http: node.http,
      cri: { containerd: missing, listen: `unix://${join(node.dir, 'cri.sock')}`, root: join(node.dir, 'cri-root'), state: join(node.dir, 'cri-state') },
      csi: { nodeId: 'node-a', root: join(node.dir, 'csi-root'), endpoint: `unix://${join(node.dir, 'csi.sock')}` },
      cnid: { socket: join(node.dir, 'cni.sock') },
    }));
    const r = await berth('doctor', '--config', file);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`fail  containerd: no socket at ${missing} (cri.containerd)\n      fix: start containerd (apt-get install containerd; systemctl enable --now containerd), or set cri.containerd in ${file} to its socket\n`);
    expect(r.stdout).toContain(`fail  component cri: enabled in ${file} but berthd does not run it\n      fix: reload berthd`);
    expect(r.stdout).toContain('ok    component csi: ready\n');
    expect(r.stdout).toMatch(/this node cannot run pods until the failures are fixed\n$/);
  });

  it('doctor names the file and key of an invalid configuration', async () => {
    const file = join(node.dir, 'bad.yaml');
    writeFileSync(file, 'csi: { root: relative }\n');
    const r = await berth('doctor', '--config', file);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^fail  config: ${file}: csi\\.nodeId is required`, 'm'));
  });

  it('status shows each component ready with its socket answering, and counts the volumes in berth-csi\'s journal', async () => {
    const client = new Client(`unix://${join(node.dir, 'csi.sock')}`, credentials.createInsecure());
    try {
      await csiCaller(client, csi.ControllerService).createVolume({ name: 'status-vol', capacityRange: { requiredBytes: 1 << 20 }, volumeCapabilities: [mountCap()], parameters: { type: 'directory' } });
    } finally {
      client.close();
    }
    const r = await berth('status', '--config', node.configFile);
    expect(r.stdout).toContain(`berthd: running on ${node.http}`);
    expect(r.stdout).toMatch(new RegExp(`^csi\\s+ready\\s+0\\s+${node.dir}/csi\\.sock \\(local\\.csi\\.berth\\.io \\d+\\.\\d+\\.\\d+\\)$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^cnid\\s+ready\\s+0\\s+${node.dir}/cni\\.sock \\(answers\\)$`, 'm'));
    expect(r.stdout).toContain(`volumes: 1 (0 published), from ${node.dir}/csi-root/state`);
    expect(r.code).toBe(0);

    const json = JSON.parse((await berth('status', '--config', node.configFile, '--json')).stdout) as { components: { name: string; state: string; restarts: number }[]; volumes: { total: number } };
    expect(json.components.map((c) => [c.name, c.state, c.restarts])).toEqual([['csi', 'ready', 0], ['cnid', 'ready', 0]]);
    expect(json.volumes.total).toBe(1);
  });

  it('with berthd stopped, doctor warns "start berthd" and status says it is not running', async () => {
    await node.halt();
    const doctor = await berth('doctor', '--config', node.configFile);
    expect(doctor.stdout).toMatch(new RegExp(`^warn  berthd: not running \\(nothing answers on ${node.http}: ECONNREFUSED\\)\n      fix: start berthd: systemctl enable --now berthd$`, 'm'));
    expect(doctor.stdout).not.toMatch(/component csi/);
    const status = await berth('status', '--config', node.configFile);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain(`berthd: not running (nothing answers on ${node.http}: ECONNREFUSED)`);
    expect(status.stdout).toMatch(/^csi\s+unknown\s+-\s+.*csi\.sock \((missing|refused)\)$/m);
  });
});

const noContainerd = skip ?? (execFileSyncOk('containerd', ['--version']) ? undefined : 'containerd is not installed');
if (noContainerd) console.log(`skipping berth doctor/status against cri: ${noContainerd}`);

function execFileSyncOk(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(noContainerd !== undefined)('berth doctor and berth status with cri on the test world\'s containerd', () => {
  let containerd: ContainerdWorld | undefined;
  let node: BerthdWorld | undefined;

  beforeAll(async () => {
    containerd = await startContainerd();
    const socket = containerd.socket;
    node = await BerthdWorld.start((dir) => ({
      cri: { containerd: socket, listen: `unix://${join(dir, 'cri.sock')}`, root: join(dir, 'cri-root'), state: join(dir, 'cri-state'), cniConfDir: join(dir, 'net.d'), cniBinDir: [join(repoRoot, 'dist/cni')], cniCacheDir: join(dir, 'cni-cache') },
      cnid: { socket: join(dir, 'cni.sock') },
    }));
  }, 60_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.log(node?.log().slice(-4000));
  });

  afterAll(async () => {
    await node?.stop();
    await containerd?.stop();
  });

  it('doctor finds containerd with its version and root, and cri ready', async () => {
    const r = await berth('doctor', '--config', node!.configFile);
    expect(r.stdout).toMatch(new RegExp(`^ok    containerd: v?\\d+\\.\\d+\\.\\d+\\S* at ${containerd!.socket}$`, 'm'));
    expect(r.stdout).toContain('ok    component cri: ready\n');
    expect(r.stdout).toMatch(/^ok {4}runtime runc: runc version \S+ \(runtime handler runc\)$/m);
    // containerd's root comes from containerd itself (its content store's exported root).
    expect(r.stdout).toContain(`containerd root ${containerd!.root}`);
  });

  it('status shows containerd\'s version, the CRI socket answering and no pods', async () => {
    const r = await berth('status', '--config', node!.configFile);
    expect(r.stdout).toMatch(new RegExp(`^containerd: v?\\d+\\.\\d+\\.\\d+\\S* at ${containerd!.socket}$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^cri\\s+ready\\s+0\\s+${node!.dir}/cri\\.sock \\(berth\\S* \\d+\\.\\d+\\.\\d+\\)$`, 'm'));
    expect(r.stdout).toContain('pods: 0 (0 ready), containers running: 0');
    expect(r.code).toBe(0);
  });
});
