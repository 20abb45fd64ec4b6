import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniRunner, parseNetworkList, type RuntimeConf } from '../lib/cni/runner.js';
import type { CniResult } from '../lib/cni/types.js';
import { errorMessage } from '../lib/errors.js';

// The CNI demo: what a container runtime does for two pods on one node, step by step, with the
// berth plugins built in dist/cni, followed by a leak check.

const network = 'berth-demo';
const bridge = 'berth-demo0';
const dataDir = '/run/berth-demo/ipam';
const pods = ['berth-demo-a', 'berth-demo-b'];

// As containerd and CRI-O do: the loopback interface is its own network, run with ifname "lo",
// and the pod network is a second list.
export const loopbackConflist = { cniVersion: '1.1.0', name: 'berth-demo-loopback', plugins: [{ type: 'berth-loopback' }] };

export const demoConflist = {
  cniVersion: '1.1.0',
  name: network,
  plugins: [
    {
      type: 'berth-bridge',
      bridge,
      isGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ipam: {
        type: 'berth-host-local',
        ranges: [[{ subnet: '10.250.0.0/24' }]],
        routes: [{ dst: '0.0.0.0/0' }],
        dataDir,
      },
    },
    { type: 'berth-portmap', capabilities: { portMappings: true } },
  ],
};

function cniDir(): string {
  // Bundled: dist/demo/berth-demo -> dist/cni. From source: demo/ -> dist/cni.
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, '../cni'), resolve(here, '../dist/cni')];
  return candidates.find((d) => existsSync(join(d, 'berth-bridge'))) ?? candidates[0]!;
}

const say = (text: string) => process.stdout.write(`${text}\n`);
const step = (text: string) => say(`\n==> ${text}`);

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

function inPod(pod: string, cmd: string[]): { ok: boolean; out: string } {
  const r = spawnSync('nsenter', [`--net=/run/netns/${pod}`, ...cmd], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

/** The pod's IPv4 address: the one on eth0, the interface the runtime asked for. */
function addressOf(result: CniResult | undefined): string {
  const eth0 = result?.interfaces?.findIndex((i) => i.name === 'eth0' && i.sandbox);
  const ipConf = result?.ips?.find((i) => i.interface === eth0 && !i.address.includes(':'));
  if (!ipConf) throw new Error('the ADD result has no IPv4 address on eth0');
  return ipConf.address.split('/')[0]!;
}

function leftovers(): string[] {
  const found: string[] = [];
  const veths = ip(['-o', 'link', 'show', 'master', bridge]).trim();
  if (veths) found.push(`veths still on ${bridge}: ${veths.split('\n').length}`);
  const leaseDir = join(dataDir, network);
  const leases = existsSync(leaseDir) ? readdirSync(leaseDir).filter((f) => /^[0-9a-f.:]+$/.test(f)) : [];
  if (leases.length) found.push(`leases still on disk: ${leases.join(', ')}`);
  const nat = spawnSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).stdout ?? '';
  const rules = nat.split('\n').filter((l) => l.includes(network) && l.startsWith('-A'));
  if (rules.length) found.push(`iptables rules still naming ${network}: ${rules.length}`);
  return found;
}

export async function runCniDemo(options: { keep: boolean }): Promise<number> {
  if (process.getuid?.() !== 0) {
    say('berth-demo cni must run as root (it creates network namespaces, links and firewall rules)');
    return 1;
  }
  const dir = cniDir();
  const runner = new CniRunner([dir]);
  const list = parseNetworkList(JSON.stringify(demoConflist), 'demo conflist');
  const loopback = parseNetworkList(JSON.stringify(loopbackConflist), 'loopback conflist');
  const lo = (pod: string): RuntimeConf => ({ containerId: pod, netns: `/run/netns/${pod}`, ifname: 'lo' });
  const results = new Map<string, CniResult | undefined>();
  const rt = (pod: string): RuntimeConf => ({ containerId: pod, netns: `/run/netns/${pod}`, ifname: 'eth0' });
  let failed = false;

  step(`network configuration (${dir}); loopback runs as its own network, as runtimes do`);
  say(JSON.stringify(demoConflist, null, 2));
  try {
    for (const pod of pods) {
      if (!existsSync(`/run/netns/${pod}`)) ip(['netns', 'add', pod]);
    }
    step('STATUS: is the network ready?');
    await runner.status(loopback);
    await runner.status(list);
    say('ready');

    for (const pod of pods) {
      step(`ADD ${pod}: loopback, then bridge + host-local and portmap`);
      const started = process.hrtime.bigint();
      await runner.add(loopback, lo(pod));
      const result = await runner.add(list, rt(pod));
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      results.set(pod, result);
      say(`${pod} got ${addressOf(result)} (gateway ${result?.ips?.[0]?.gateway}) in ${ms.toFixed(0)} ms`);
      say(inPod(pod, ['ip', '-brief', 'address', 'show']).out);
    }

    const [a, b] = pods as [string, string];
    const ipA = addressOf(results.get(a));
    const ipB = addressOf(results.get(b));
    const gateway = results.get(a)?.ips?.[0]?.gateway ?? '';
    for (const [from, to, label] of [[a, ipB, `${b}`], [b, ipA, `${a}`], [a, gateway, 'the gateway']] as const) {
      step(`ping from ${from} to ${label} (${to})`);
      const r = inPod(from, ['ping', '-c', '2', '-W', '2', to]);
      say(r.out.split('\n').slice(-2).join('\n'));
      if (!r.ok) failed = true;
    }

    step('CHECK both attachments');
    for (const pod of pods) {
      await runner.check(list, rt(pod), results.get(pod)!);
      say(`${pod}: ok`);
    }
    if (options.keep) {
      step('--keep: leaving both pods attached');
      return failed ? 1 : 0;
    }

    for (const pod of pods) {
      step(`DEL ${pod} (twice: DEL is idempotent)`);
      for (let i = 0; i < 2; i++) {
        await runner.del(list, rt(pod), results.get(pod));
        await runner.del(loopback, lo(pod));
      }
      say('done');
    }

    step('leak check');
    const leaks = leftovers();
    say(leaks.length ? leaks.join('\n') : 'nothing leaked: no veths on the bridge, no leases, no masquerade rules');
    if (leaks.length) failed = true;
  } catch (err) {
    failed = true;
    say(`demo failed: ${errorMessage(err)}`);
    for (const pod of pods) {
      await runner.del(list, rt(pod), results.get(pod)).catch(() => undefined);
      await runner.del(loopback, lo(pod)).catch(() => undefined);
    }
  } finally {
    if (!options.keep) {
      for (const pod of pods) spawnSync('ip', ['netns', 'del', pod]);
      spawnSync('ip', ['link', 'del', bridge]);
      rmSync(dirname(dataDir), { recursive: true, force: true });
    }
  }
  step(failed ? 'demo FAILED' : 'demo passed');
  return failed ? 1 : 0;
}
