import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planUninstall, type UninstallOptions } from '../../../../cli/install/plan-uninstall.js';
import { parseConfigText, planInstall, planRollback, type Action, type InstallOptions, type Plan, type PlannedRelease } from '../../../../cli/install/plan.js';
import { renderConflist, renderCrictl } from '../../../../cli/install/render.js';
import type { HostState, PathState } from '../../../../cli/install/state.js';

// The planner is pure: each test builds the host as data, plans, and checks the actions. A
// host "after" a plan is the plan's writes folded into the state, as the executor would leave it.

const repo = join(import.meta.dirname, '../../../..');
const units = Object.fromEntries(readdirSync(join(repo, 'systemd')).map((n) => [n, readFileSync(join(repo, 'systemd', n), 'utf8')]));
const release = (version = '0.1.0', digest = 'd1'): PlannedRelease => ({
  version,
  digest,
  units,
  configTemplate: readFileSync(join(repo, 'share/berth.yaml'), 'utf8'),
  cniPlugins: ['berth-bandwidth', 'berth-bridge', 'berth-host-local', 'berth-loopback', 'berth-overlay', 'berth-portmap', 'berth-tuning'],
});
const opts = (o: Partial<InstallOptions> = {}): InstallOptions => ({ prefix: '/usr/lib/berth', separateUnits: false, podCidr: '10.88.0.0/16', noPackages: false, root: '', ...o });
const emptyHost = (o: Partial<HostState> = {}): HostState => ({ paths: {}, releases: {}, missingPackages: [], units: {}, hostname: 'node-7', mounts: [], ...o });

/** The host as the executor leaves it after `plan` (units enabled and started as asked). */
function after(state: HostState, plan: Plan, rel?: PlannedRelease): HostState {
  const paths: Record<string, PathState> = { ...state.paths };
  const releases = { ...state.releases };
  const unitStates = structuredClone(state.units);
  for (const a of plan.actions) {
    if (a.kind === 'file' && (a.change === 'created' || a.change === 'updated')) paths[a.path] = { kind: 'file', content: a.content };
    else if (a.kind === 'link') paths[a.path] = { kind: 'link', target: a.target };
    else if (a.kind === 'release') releases[a.version] = rel!.digest;
    else if (a.kind === 'remove') {
      delete paths[a.path];
      for (const p of Object.keys(paths)) if (p.startsWith(`${a.path}/`)) delete paths[p];
      const m = /\/releases\/([^/]+)$/.exec(a.path);
      if (m) delete releases[m[1]!];
    } else if (a.kind === 'systemctl') {
      const [verb, ...names] = a.args;
      for (const u of names) {
        const s = (unitStates[u] ??= { enabled: false, active: state.units[u]?.active ?? (plan === undefined ? undefined : false) });
        if (verb === 'enable') s.enabled = true;
        if (verb === 'disable') s.enabled = false;
        if (verb === 'start' || verb === 'restart') s.active = true;
        if (verb === 'stop') s.active = false;
      }
    }
  }
  return { ...state, paths, releases, units: unitStates, missingPackages: [] };
}

const changes = (plan: Plan): string[] =>
  plan.actions.flatMap((a: Action) => {
    if (a.kind === 'file' || a.kind === 'link' || a.kind === 'release') return a.change === 'unchanged' || a.change === 'kept' ? [] : [`${a.change} ${a.path}`];
    if (a.kind === 'remove') return [`removed ${a.path}`];
    if (a.kind === 'systemctl') return [`systemctl ${a.args.join(' ')}`];
    if (a.kind === 'packages') return [`packages ${a.packages.join(' ')}`];
    return [];
  });
const fileOf = (plan: Plan, path: string): string => {
  const a = plan.actions.find((x) => x.kind === 'file' && x.path === path);
  if (!a || a.kind !== 'file') throw new Error(`no file action for ${path}`);
  return a.content;
};

describe('berth install plan', () => {
  it('a fresh install creates the release, links, config, unit, CNI, crictl and kubelet files, then enables and starts berthd', () => {
    const plan = planInstall(emptyHost({ missingPackages: ['containerd', 'runc'] }), release(), opts());
    expect(changes(plan)).toEqual([
      'packages containerd runc',
      'created /usr/lib/berth/releases/0.1.0',
      'created /usr/lib/berth/current',
      'created /usr/local/bin/berth',
      'created /etc/berth/berth.yaml',
      'created /etc/systemd/system/berthd.service',
      'created /opt/cni/bin/berth-bandwidth',
      'created /opt/cni/bin/berth-bridge',
      'created /opt/cni/bin/berth-host-local',
      'created /opt/cni/bin/berth-loopback',
      'created /opt/cni/bin/berth-overlay',
      'created /opt/cni/bin/berth-portmap',
      'created /opt/cni/bin/berth-tuning',
      'created /etc/cni/net.d/10-berth.conflist',
      'created /etc/crictl.yaml',
      'created /etc/berth/kubelet/10-berth.conf',
      'created /etc/berth/kubelet/kubelet-flags.env',
      'systemctl daemon-reload',
      'systemctl enable berthd.service',
      'systemctl start berthd.service',
    ]);
    const config = parseConfigText(fileOf(plan, '/etc/berth/berth.yaml'), 'planned');
    expect(Object.keys(config.components)).toEqual(['cri', 'csi', 'cnid']);
    expect(config.components.csi?.nodeId).toBe('node-7');
    expect(fileOf(plan, '/etc/systemd/system/berthd.service')).toContain('ExecStart=/usr/lib/berth/current/node/bin/node $BERTH_NODE_FLAGS /usr/lib/berth/current/bin/berthd $BERTHD_ARGS');
    expect(plan.actions.find((a) => a.kind === 'link' && a.path === '/opt/cni/bin/berth-bridge')).toMatchObject({ target: '/usr/lib/berth/current/cni/berth-bridge' });
    expect(plan.actions.at(-1)).toMatchObject({ kind: 'print', text: expect.stringContaining('containerRuntimeEndpoint: unix:///run/berth/cri.sock') });
  });

  it('a second run over the result changes nothing', () => {
    const first = emptyHost();
    const second = planInstall(after(first, planInstall(first, release(), opts()), release()), release(), opts());
    expect(changes(second)).toEqual([]);
  });

  it('--components and --node-name shape a new berth.yaml; the kubelet snippet follows its cgroup driver', () => {
    const plan = planInstall(emptyHost(), release(), opts({ components: ['cri', 'gpu'], nodeName: 'worker-3' }));
    const config = parseConfigText(fileOf(plan, '/etc/berth/berth.yaml'), 'planned');
    expect(Object.keys(config.components)).toEqual(['cri', 'gpu']);
    expect(fileOf(plan, '/etc/berth/berth.yaml')).toContain('nodeId: worker-3');
    const custom = 'cri: { cgroupDriver: systemd, listen: unix:///run/b/cri.sock }\n';
    const withConfig = planInstall(emptyHost(), release(), opts({ config: { text: custom, source: '/tmp/b.yaml' } }));
    expect(fileOf(withConfig, '/etc/berth/berth.yaml')).toBe(custom);
    expect(fileOf(withConfig, '/etc/berth/kubelet/10-berth.conf')).toContain('cgroupDriver: systemd');
    expect(fileOf(withConfig, '/etc/berth/kubelet/10-berth.conf')).toContain('containerRuntimeEndpoint: unix:///run/b/cri.sock');
    expect(fileOf(withConfig, '/etc/berth/kubelet/kubelet-flags.env')).toContain('--cgroup-driver=systemd');
  });

  it('keeps an existing berth.yaml, and says --components does not change it', () => {
    const existing = 'cri: {}\ncsi: { nodeId: mine }\n';
    const plan = planInstall(emptyHost({ paths: { '/etc/berth/berth.yaml': { kind: 'file', content: existing } } }), release(), opts({ components: ['gpu'] }));
    expect(plan.actions.find((a) => a.kind === 'file' && a.path === '/etc/berth/berth.yaml')).toMatchObject({ change: 'unchanged' });
    expect(plan.warnings.join('\n')).toMatch(/--components: \/etc\/berth\/berth.yaml exists/);
  });

  it('an invalid configuration stops the plan with the field named', () => {
    expect(() => planInstall(emptyHost(), release(), opts({ config: { text: 'cri: { cgroupDriver: nope }\n', source: '/tmp/bad.yaml' } }))).toThrow(/\/tmp\/bad.yaml: cri.cgroupDriver/);
  });

  it('an upgrade keeps the old release as previous, restarts only berth units that run, never containerd', () => {
    const v1 = after(emptyHost(), planInstall(emptyHost(), release('0.1.0', 'a'), opts()), release('0.1.0', 'a'));
    const plan = planInstall(v1, release('0.2.0', 'b'), opts());
    expect(changes(plan)).toEqual(['created /usr/lib/berth/releases/0.2.0', 'created /usr/lib/berth/previous', 'updated /usr/lib/berth/current', 'systemctl restart berthd.service']);
    expect(plan.actions.find((a) => a.kind === 'link' && a.path === '/usr/lib/berth/previous')).toMatchObject({ target: 'releases/0.1.0' });
    expect(JSON.stringify(plan.actions.filter((a) => a.kind === 'systemctl'))).not.toContain('containerd');
    // A third version drops the oldest: one previous release is kept.
    const v3 = planInstall(after(v1, plan, release('0.2.0', 'b')), release('0.3.0', 'c'), opts());
    expect(changes(v3)).toEqual(['created /usr/lib/berth/releases/0.3.0', 'updated /usr/lib/berth/previous', 'updated /usr/lib/berth/current', 'removed /usr/lib/berth/releases/0.1.0', 'systemctl restart berthd.service']);
  });

  it('the same version with other bytes (a rebuild) replaces the tree and restarts', () => {
    const v1 = after(emptyHost(), planInstall(emptyHost(), release('0.1.0', 'a'), opts()), release('0.1.0', 'a'));
    expect(changes(planInstall(v1, release('0.1.0', 'a2'), opts()))).toEqual(['updated /usr/lib/berth/releases/0.1.0', 'systemctl restart berthd.service']);
  });

  it('rollback points current at the previous release and restarts berth units', () => {
    const v1 = after(emptyHost(), planInstall(emptyHost(), release('0.1.0', 'a'), opts()), release('0.1.0', 'a'));
    const v2 = after(v1, planInstall(v1, release('0.2.0', 'b'), opts()), release('0.2.0', 'b'));
    const plan = planRollback(v2, opts());
    expect(changes(plan)).toEqual(['updated /usr/lib/berth/current', 'updated /usr/lib/berth/previous', 'systemctl restart berthd.service']);
    expect(plan.actions[0]).toMatchObject({ target: 'releases/0.1.0' });
    expect(plan.actions[1]).toMatchObject({ target: 'releases/0.2.0' });
    expect(() => planRollback(v1, opts())).toThrow(/no previous release/);
    expect(() => planRollback(emptyHost(), opts())).toThrow(/not installed/);
  });

  it('under --root: units are enabled through systemctl --root, nothing is started, and packages are not asked', () => {
    const plan = planInstall(emptyHost(), release(), opts({ root: '/tmp/r', noPackages: true }));
    expect(plan.actions.filter((a) => a.kind === 'systemctl')).toEqual([{ kind: 'systemctl', args: ['enable', 'berthd.service'] }]);
    expect(plan.warnings.join('\n')).toMatch(/nothing is started/);
  });

  it('a foreign /etc/crictl.yaml is kept; berth\'s own, or one already pointing at berth, is managed', () => {
    const config = parseConfigText('cri: {}\n', 't');
    const foreign = planInstall(emptyHost({ paths: { '/etc/crictl.yaml': { kind: 'file', content: 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' } } }), release(), opts());
    expect(foreign.actions.find((a) => a.kind === 'file' && a.path === '/etc/crictl.yaml')).toMatchObject({ change: 'kept' });
    const pointing = planInstall(emptyHost({ paths: { '/etc/crictl.yaml': { kind: 'file', content: 'runtime-endpoint: unix:///run/berth/cri.sock\ntimeout: 2\n' } } }), release(), opts());
    expect(pointing.actions.find((a) => a.kind === 'file' && a.path === '/etc/crictl.yaml')).toMatchObject({ change: 'updated' });
    const ours = planInstall(emptyHost({ paths: { '/etc/crictl.yaml': { kind: 'file', content: renderCrictl(config) } } }), release(), opts());
    expect(ours.actions.find((a) => a.kind === 'file' && a.path === '/etc/crictl.yaml')).toMatchObject({ change: 'unchanged' });
  });

  it('a foreign 10-berth.conflist is kept; the network follows --pod-cidr, or the overlay\'s subnet file', () => {
    const foreign = planInstall(emptyHost({ paths: { '/etc/cni/net.d/10-berth.conflist': { kind: 'file', content: '{"name":"cbr0","plugins":[{"type":"bridge"}]}' } } }), release(), opts());
    expect(foreign.actions.find((a) => a.kind === 'file' && a.path === '/etc/cni/net.d/10-berth.conflist')).toMatchObject({ change: 'kept' });
    const bridge = JSON.parse(fileOf(planInstall(emptyHost(), release(), opts({ podCidr: '10.99.0.0/16' })), '/etc/cni/net.d/10-berth.conflist'));
    expect(bridge.plugins[0]).toMatchObject({ type: 'berth-bridge', ipam: { type: 'berth-host-local', ranges: [[{ subnet: '10.99.0.0/16' }]] } });
    const overlayPlan = planInstall(emptyHost(), release(), opts({ components: ['cri', 'overlay', 'cnid'], podCidr: '10.244.0.0/16' }));
    const overlay = JSON.parse(fileOf(overlayPlan, '/etc/cni/net.d/10-berth.conflist'));
    expect(overlay.plugins[0]).toMatchObject({ type: 'berth-overlay', subnetFile: '/run/berth/subnet.env' });
    expect(JSON.parse(fileOf(overlayPlan, '/etc/berth/overlay-network.json'))).toMatchObject({ Network: '10.244.0.0/16' });
    // Chained after the main plugin: portmap for hostPort, then bandwidth for the pods' annotations.
    const chained = JSON.parse(renderConflist(parseConfigText('cri: {}\n', 't'), '10.88.0.0/16')).plugins.slice(1);
    expect(chained).toEqual([
      { type: 'berth-portmap', capabilities: { portMappings: true }, snat: true },
      { type: 'berth-bandwidth', capabilities: { bandwidth: true } },
    ]);
    expect(overlay.plugins.slice(1)).toEqual(chained);
  });

  it('separate units: one per enabled component, the cnid socket, each reading its section; switching back removes them', () => {
    const plan = planInstall(emptyHost(), release(), opts({ separateUnits: true }));
    expect(changes(plan).filter((c) => c.includes('systemd') || c.includes('default') || c.startsWith('systemctl'))).toEqual([
      'created /etc/systemd/system/berth-cri.service',
      'created /etc/systemd/system/berth-csi.service',
      'created /etc/systemd/system/berth-cnid.socket',
      'created /etc/systemd/system/berth-cnid.service',
      'created /etc/default/berth-cri',
      'created /etc/default/berth-csi',
      'systemctl daemon-reload',
      'systemctl enable berth-cri.service berth-csi.service berth-cnid.socket',
      'systemctl start berth-cri.service berth-csi.service berth-cnid.socket',
    ]);
    expect(fileOf(plan, '/etc/berth/csi.yaml')).toMatch(/nodeId: node-7/);
    expect(fileOf(plan, '/etc/berth/csi.yaml')).not.toMatch(/enabled/);
    expect(fileOf(plan, '/etc/default/berth-csi')).toBe('# Written by berth install: berth-csi\'s settings come from its section of /etc/berth/berth.yaml.\nBERTH_CSI_ARGS="--config /etc/berth/csi.yaml"\n');
    const separate = after(emptyHost(), plan, release());
    const back = planInstall(separate, release(), opts());
    expect(changes(back)).toEqual([
      'systemctl stop berth-cri.service berth-csi.service berth-cnid.socket berth-cnid.service',
      'systemctl disable berth-cri.service berth-csi.service berth-cnid.socket',
      'removed /etc/systemd/system/berth-cri.service',
      'removed /etc/systemd/system/berth-csi.service',
      'removed /etc/systemd/system/berth-cnid.socket',
      'removed /etc/systemd/system/berth-cnid.service',
      'created /etc/systemd/system/berthd.service',
      'removed /etc/berth/cri.yaml',
      'removed /etc/default/berth-cri',
      'removed /etc/berth/csi.yaml',
      'removed /etc/default/berth-csi',
      'systemctl daemon-reload',
      'systemctl enable berthd.service',
      'systemctl start berthd.service',
    ]);
  });

  it('a changed berth.yaml from --config reloads a running berthd instead of restarting it', () => {
    const v1 = after(emptyHost(), planInstall(emptyHost(), release(), opts()), release());
    const plan = planInstall(v1, release(), opts({ config: { text: 'cri: {}\ncnid: {}\n', source: '/tmp/c.yaml' } }));
    expect(changes(plan)).toEqual(['updated /etc/berth/berth.yaml', 'systemctl reload berthd.service']);
  });

  it('a directory where a file belongs stops the plan, naming it', () => {
    expect(() => planInstall(emptyHost({ paths: { '/etc/crictl.yaml': { kind: 'dir' } } }), release(), opts())).toThrow(/\/etc\/crictl.yaml exists and is not a regular file/);
  });
});

describe('berth uninstall plan', () => {
  const installed = (): HostState => {
    const host = after(emptyHost(), planInstall(emptyHost(), release(), opts()), release());
    // Directories as the inspector sees them (the fold above records files and links only).
    for (const d of ['/usr/lib/berth', '/etc/berth', '/etc/berth/kubelet']) host.paths[d] = { kind: 'dir' };
    return host;
  };
  const config = parseConfigText('cri: {}\ncsi: { nodeId: n }\n', 't');
  const un = (o: Partial<UninstallOptions> = {}): UninstallOptions => ({ prefix: '/usr/lib/berth', purge: false, force: false, root: '', pods: { running: 0 }, ...o });

  it('stops, disables and removes the units, links, berth\'s files and the prefix; keeps /etc/berth', () => {
    const plan = planUninstall(installed(), config, un());
    expect(changes(plan)).toEqual([
      'systemctl stop berthd.service',
      'systemctl disable berthd.service',
      'removed /etc/systemd/system/berthd.service',
      'systemctl daemon-reload',
      'removed /opt/cni/bin/berth-bandwidth',
      'removed /opt/cni/bin/berth-bridge',
      'removed /opt/cni/bin/berth-host-local',
      'removed /opt/cni/bin/berth-loopback',
      'removed /opt/cni/bin/berth-overlay',
      'removed /opt/cni/bin/berth-portmap',
      'removed /opt/cni/bin/berth-tuning',
      'removed /etc/cni/net.d/10-berth.conflist',
      'removed /etc/crictl.yaml',
      'removed /etc/berth/kubelet/10-berth.conf',
      'removed /etc/berth/kubelet/kubelet-flags.env',
      'removed /usr/local/bin/berth',
      'removed /usr/lib/berth',
    ]);
    expect(plan.warnings.join()).toMatch(/kept \(--purge removes them/);
  });

  it('leaves a foreign crictl.yaml, conflist and CNI executable alone', () => {
    const host = installed();
    host.paths['/etc/crictl.yaml'] = { kind: 'file', content: 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' };
    host.paths['/etc/cni/net.d/10-berth.conflist'] = { kind: 'file', content: '{"name":"other","plugins":[]}' };
    host.paths['/opt/cni/bin/berth-custom'] = { kind: 'link', target: '/opt/mine/berth-custom' };
    const removed = changes(planUninstall(host, config, un()));
    expect(removed).not.toContain('removed /etc/crictl.yaml');
    expect(removed).not.toContain('removed /etc/cni/net.d/10-berth.conflist');
    expect(removed).not.toContain('removed /opt/cni/bin/berth-custom');
  });

  it('--purge also removes /etc/berth and berth\'s state directories when no pod runs', () => {
    const host = installed();
    for (const p of ['/var/lib/berth/cri', '/run/berth/cri', '/var/lib/berth/volumes', '/var/lib/berth', '/run/berth']) host.paths[p] = { kind: 'dir' };
    const plan = planUninstall(host, config, un({ purge: true }));
    expect(changes(plan).slice(-4)).toEqual(['removed /etc/berth', 'removed /var/lib/berth/cri', 'removed /run/berth/cri', 'removed /var/lib/berth/volumes']);
    expect(plan.actions.filter((a) => a.kind === 'rmdir').map((a) => (a as { path: string }).path)).toEqual(['/etc/berth/kubelet', '/var/lib/berth', '/run/berth']);
    expect(JSON.stringify(plan.actions)).not.toMatch(/containerd/);
  });

  it('--purge is refused while pods run or when the runtime cannot be asked, unless --force', () => {
    expect(() => planUninstall(installed(), config, un({ purge: true, pods: { running: 2 } }))).toThrow(/2 pod\(s\) still run/);
    expect(() => planUninstall(installed(), config, un({ purge: true, pods: { unknown: 'no socket' } }))).toThrow(/cannot tell whether pods run \(no socket\)/);
    expect(changes(planUninstall(installed(), config, un({ purge: true, force: true, pods: { running: 2 } })))).toContain('removed /etc/berth');
  });

  it('--purge never deletes through a mount point, nor containerd\'s data, whatever the config says', () => {
    const host = installed();
    host.mounts = ['/var/lib/berth/volumes/staging/v1'];
    expect(() => planUninstall(host, config, un({ purge: true }))).toThrow(/\/var\/lib\/berth\/volumes has mounts under it/);
    const evil = parseConfigText('cri: { root: /var/lib/containerd/io.containerd.runtime.v2.task }\n', 't');
    expect(() => planUninstall(installed(), evil, un({ purge: true }))).toThrow(/holds containerd's own data/);
    const evil2 = parseConfigText('cri: {}\ncsi: { nodeId: n, root: /var/lib }\n', 't');
    expect(() => planUninstall(installed(), evil2, un({ purge: true }))).toThrow(/refusing to remove \/var\/lib: .* system directory/);
  });

  it('removes the directories install made (recorded), deepest first, only if empty', () => {
    const host = installed();
    host.paths['/usr/lib/berth/created-dirs.json'] = { kind: 'file', content: JSON.stringify(['/opt', '/opt/cni', '/opt/cni/bin', '/etc/cni/net.d', '/etc/cni']) };
    const dirs = planUninstall(host, config, un()).actions.filter((a) => a.kind === 'rmdir').map((a) => (a as { path: string }).path);
    expect(dirs.slice(-5)).toEqual(['/opt/cni/bin', '/etc/cni/net.d', '/opt/cni', '/etc/cni', '/opt']);
  });

  it('under --root nothing is stopped or reloaded; units are disabled through systemctl --root', () => {
    const plan = planUninstall(installed(), config, un({ root: '/tmp/r' }));
    expect(plan.actions.filter((a) => a.kind === 'systemctl')).toEqual([{ kind: 'systemctl', args: ['disable', 'berthd.service'] }]);
  });
});
