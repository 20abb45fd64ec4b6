import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { berthPlugin, runCni } from '../../../../world/cni.js';
import { isRoot, trySh, TestWorld, uniqueName } from '../../../../world/netns.js';
import { bridgeNetconf } from '../../../../world/pod-network.js';

// berth-portmap chained after berth-bridge, as a runtime runs them, with a real TCP server in
// the pod's namespace and real connections: from the host (also to 127.0.0.1), from another
// pod, and from the pod to its own host port (hairpin).

const bridgePath = berthPlugin('berth-bridge');
const portmapPath = berthPlugin('berth-portmap');
const world = new TestWorld();
const servers: ChildProcess[] = [];
let dataDir = '';
let bridge = '';
let network = '';
const gateway = '10.202.0.1';

function netconf(backend: string) {
  // A pod reaching its own host port comes back out of the port it went in: hairpin.
  return bridgeNetconf({ network, bridge, subnet: '10.202.0.0/24', dataDir }, { ipMasqBackend: backend, hairpinMode: true });
}

function portmapConf(backend: string, mappings: unknown[], prevResult?: unknown, extra: Record<string, unknown> = {}) {
  return { cniVersion: '1.1.0', name: network, type: 'berth-portmap', backend, runtimeConfig: { portMappings: mappings }, ...(prevResult ? { prevResult } : {}), ...extra };
}

/** A pod on the bridge with a TCP server on port 8080 answering its name. */
async function pod(id: string, backend: string) {
  const ns = world.netns();
  const add = await runCni(bridgePath, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0' }, netconf(backend));
  expect(add.code, add.stdout).toBe(0);
  const server = spawn('nsenter', [`--net=${ns.path}`, process.execPath, '-e',
    `require('net').createServer((s) => s.end('hello from ${id}')).listen(8080, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.stdout!.once('data', () => resolve());
    server.once('exit', (code) => reject(new Error(`server in ${ns.name} exited with ${code}`)));
  });
  return { id, ns, result: add.json! };
}

/** Connect to host:port from the host, or from inside a namespace; the reply or the error. */
function connect(host: string, port: number, fromNs?: string): string {
  const script = `const s=require('net').connect(${port},'${host}');let d='';s.setTimeout(2000,()=>{console.log('timeout');process.exit(0)});` +
    `s.on('data',(b)=>d+=b);s.on('end',()=>{console.log(d);process.exit(0)});s.on('error',(e)=>{console.log(e.code);process.exit(0)});`;
  const args = fromNs ? ['nsenter', `--net=/run/netns/${fromNs}`, process.execPath, '-e', script] : [process.execPath, '-e', script];
  return trySh(args[0]!, args.slice(1)).stdout.trim();
}

function natRules(): string {
  return trySh('iptables-save', ['-t', 'nat']).stdout.split('\n').filter((l) => l.includes(`net=${network} `)).join('\n');
}

function nftRules(): string {
  return trySh('nft', ['list', 'table', 'inet', 'berth-portmap']).stdout.split('\n').filter((l) => l.includes(`net=${network} `)).join('\n');
}

describe.skipIf(!isRoot)('berth-portmap with real connections', () => {
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'berth-portmap-'));
    bridge = world.link(uniqueName('btpm'));
    network = uniqueName('pm-');
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) s.kill('SIGKILL');
    for (const backend of ['iptables', 'nftables']) {
      await runCni(portmapPath, { command: 'GC' }, { ...portmapConf(backend, []), 'cni.dev/valid-attachments': [] }).catch(() => undefined);
    }
    world.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  for (const backend of ['iptables', 'nftables']) {
    it(`${backend}: forwards a host port from the host, from 127.0.0.1, from another pod and back to the pod itself; DEL removes every rule`, async () => {
      const a = await pod('pm-a', backend);
      const b = await pod('pm-b', backend);
      const mappings = [{ hostPort: 30080, containerPort: 8080, protocol: 'tcp' }];
      const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
      const add = await runCni(portmapPath, call, portmapConf(backend, mappings, a.result));
      expect(add.code, add.stdout).toBe(0);
      // A chained plugin that changes no interface passes the previous result through.
      expect(add.json?.ips).toEqual(a.result.ips);

      expect(connect(gateway, 30080)).toBe('hello from pm-a');
      expect(connect('127.0.0.1', 30080)).toBe('hello from pm-a');
      expect(connect(gateway, 30080, b.ns.name)).toBe('hello from pm-a');
      expect(connect(gateway, 30080, a.ns.name)).toBe('hello from pm-a');

      // CHECK passes for this IPv4-only pod (the reference portmap 1.1.1 fails it).
      const check = await runCni(portmapPath, { ...call, command: 'CHECK' }, portmapConf(backend, mappings, a.result));
      expect(check.code, check.stdout).toBe(0);

      for (let i = 0; i < 2; i++) {
        const del = await runCni(portmapPath, { ...call, command: 'DEL' }, portmapConf(backend, mappings));
        expect(del.code, del.stdout).toBe(0);
      }
      expect(natRules()).toBe('');
      expect(nftRules()).toBe('');
      expect(connect(gateway, 30080)).toMatch(/ECONNREFUSED|timeout/);
    });
  }

  it('hostIP limits the mapping to that host address', async () => {
    const a = await pod('pm-h', 'iptables');
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    const add = await runCni(portmapPath, call, portmapConf('iptables', [{ hostPort: 30081, containerPort: 8080, hostIP: gateway }], a.result));
    expect(add.code, add.stdout).toBe(0);
    expect(connect(gateway, 30081)).toBe('hello from pm-h');
    expect(connect('127.0.0.1', 30081)).toMatch(/ECONNREFUSED|timeout/);
  });

  it('CHECK fails when a forwarding rule was removed behind its back', async () => {
    const a = await pod('pm-c', 'iptables');
    const mappings = [{ hostPort: 30082, containerPort: 8080 }];
    const call = { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' };
    expect((await runCni(portmapPath, call, portmapConf('iptables', mappings, a.result))).code).toBe(0);
    const chain = /-A (BERTH-DN-[0-9a-f]+) .*DNAT/.exec(natRules())?.[1];
    expect(chain).toBeDefined();
    trySh('iptables', ['-t', 'nat', '-F', chain!]);
    const check = await runCni(portmapPath, { ...call, command: 'CHECK' }, portmapConf('iptables', mappings, a.result));
    expect(check.code).not.toBe(0);
    expect(check.json?.msg).toContain('30082');
    expect((await runCni(portmapPath, { ...call, command: 'DEL' }, portmapConf('iptables', mappings))).code).toBe(0);
    expect(natRules()).toBe('');
  });

  it('GC removes the rules of attachments not in the valid list, on both backends', async () => {
    const a = await pod('pm-keep', 'iptables');
    const b = await pod('pm-drop', 'nftables');
    expect((await runCni(portmapPath, { command: 'ADD', containerId: a.id, netns: a.ns.path, ifname: 'eth0' }, portmapConf('iptables', [{ hostPort: 30083, containerPort: 8080 }], a.result))).code).toBe(0);
    expect((await runCni(portmapPath, { command: 'ADD', containerId: b.id, netns: b.ns.path, ifname: 'eth0' }, portmapConf('nftables', [{ hostPort: 30084, containerPort: 8080 }], b.result))).code).toBe(0);
    const gc = await runCni(portmapPath, { command: 'GC' }, { ...portmapConf('iptables', []), 'cni.dev/valid-attachments': [{ containerID: 'pm-keep', ifname: 'eth0' }] });
    expect(gc.code, gc.stdout).toBe(0);
    expect(natRules()).toContain('id=pm-keep');
    expect(nftRules()).toBe('');
    expect(connect(gateway, 30083)).toBe('hello from pm-keep');
  });

  it('ADD without mappings passes the previous result through and touches nothing', async () => {
    const prev = { cniVersion: '1.1.0', ips: [{ address: '10.202.0.9/24' }] };
    const out = await runCni(portmapPath, { command: 'ADD', containerId: 'none', netns: '/proc/self/ns/net', ifname: 'eth0' }, portmapConf('iptables', [], prev));
    expect(out.code, out.stdout).toBe(0);
    expect(out.json?.ips).toEqual(prev.ips);
    expect(natRules()).toBe('');
  });

  it('rejects bad mappings with a message naming the field', async () => {
    const call = { command: 'ADD', containerId: 'bad', netns: '/proc/self/ns/net', ifname: 'eth0' };
    const prev = { cniVersion: '1.1.0', ips: [{ address: '10.202.0.9/24' }] };
    const cases: [unknown[], RegExp][] = [
      [[{ hostPort: 0, containerPort: 80 }], /runtimeConfig\.portMappings\[0\]\.hostPort: expected an integer from 1 to 65535, got 0/],
      [[{ hostPort: 80, containerPort: 80 }, { hostPort: 81 }], /runtimeConfig\.portMappings\[1\]\.containerPort: required/],
      [[{ hostPort: 80, containerPort: 80, protocol: 'icmp' }], /protocol: expected one of tcp, udp, sctp, got "icmp"/],
      [[{ hostPort: 80, containerPort: 80, hostIP: 'nope' }], /hostIP: expected an IP address/],
    ];
    for (const [mappings, msg] of cases) {
      const out = await runCni(portmapPath, call, portmapConf('iptables', mappings, prev));
      expect(out.code).not.toBe(0);
      expect(out.json).toMatchObject({ code: 7, msg: expect.stringMatching(msg) });
    }
    const noPrev = await runCni(portmapPath, call, portmapConf('iptables', [{ hostPort: 80, containerPort: 80 }]));
    expect(noPrev.json).toMatchObject({ code: 7, msg: expect.stringMatching(/^prevResult: required/) });
  });

  it('STATUS reports the backend tool available', async () => {
    for (const backend of ['iptables', 'nftables']) {
      const out = await runCni(portmapPath, { command: 'STATUS' }, portmapConf(backend, []));
      expect(out.code, out.stdout).toBe(0);
    }
  });
});
