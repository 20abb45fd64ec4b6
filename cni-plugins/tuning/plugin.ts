import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createFileExclusive, removeFileIfExists } from '../../lib/atomic-file.js';
import { BerthError } from '../../lib/errors.js';
import type { CniPlugin, CommandContext } from '../../lib/cni/skeleton.js';
import type { CniAttachment, CniResult } from '../../lib/cni/types.js';
import type { RtnlSession} from '../../lib/netlink/rtnl.js';
import { withRtnl, type LinkInfo } from '../../lib/netlink/rtnl.js';
import { netnsExists, withNetns } from '../../lib/netns.js';
import { macOf, parseTuningConfig, sysctlKeyPath, type TuningConfig } from './config.js';

// berth-tuning: a chained plugin that sets the pod interface's sysctls and link settings inside
// the pod's namespace. The link settings it changes are saved first and put back by DEL, as the
// reference does; sysctls are not (they die with the namespace).

type Ctx = CommandContext<TuningConfig>;

/** What the interface had before ADD changed it: only the settings ADD touches. */
interface Backup {
  network: string;
  containerId: string;
  ifname: string;
  mac?: string;
  mtu?: number;
  promisc?: boolean;
  allmulti?: boolean;
  txQLen?: number;
}

const backupPath = (conf: TuningConfig, containerId: string, ifname: string) => join(conf.dataDir, `${containerId}-${ifname}.json`);

function wantsLinkChange(conf: TuningConfig, mac: string | undefined): boolean {
  return mac !== undefined || conf.mtu !== undefined || conf.promisc !== undefined || conf.allmulti !== undefined || conf.txQLen !== undefined;
}

async function podLink(s: RtnlSession, ctx: Ctx): Promise<LinkInfo> {
  const link = await s.getLink(ctx.ifname);
  if (!link) throw new BerthError('not-found', `interface ${ctx.ifname} does not exist in ${ctx.netns}`);
  return link;
}

/** Write the sysctls inside the pod's namespace: /proc/sys/net is that of the thread that opens it. */
function writeSysctls(ctx: Ctx): void {
  withNetns(ctx.netns as string, () => {
    for (const { key, value } of ctx.conf.sysctl) {
      const file = `/proc/sys/${sysctlKeyPath(key, ctx.ifname)}`;
      // A network sysctl missing from a pod's namespace is one the kernel keeps host-wide: refuse it.
      if (!existsSync(file)) throw new BerthError('invalid-config', `sysctl[${JSON.stringify(key)}]: no such per-namespace network sysctl (${file} is not in the pod's network namespace)`);
      try {
        writeFileSync(file, value);
      } catch (err) {
        throw new BerthError('invalid-config', `sysctl[${JSON.stringify(key)}]: cannot write ${JSON.stringify(value)} to ${file}: ${(err as Error).message}`);
      }
    }
  });
}

// The kernel prints vectors with tabs ("0\t1000") whatever separator was written.
const normalize = (v: string) => v.trim().split(/\s+/).join(' ');

function readSysctls(ctx: Ctx): { key: string; want: string; have: string }[] {
  return withNetns(ctx.netns as string, () =>
    ctx.conf.sysctl.map(({ key, value }) => {
      const file = `/proc/sys/${sysctlKeyPath(key, ctx.ifname)}`;
      const have = existsSync(file) ? normalize(readFileSync(file, 'utf8')) : '(missing)';
      return { key, want: normalize(value), have };
    }),
  );
}

async function applyLink(s: RtnlSession, link: LinkInfo, conf: TuningConfig, mac: string | undefined): Promise<void> {
  if (mac !== undefined && mac !== link.mac) await s.setMac(link.index, mac);
  if (conf.mtu !== undefined && conf.mtu !== link.mtu) await s.setMtu(link.index, conf.mtu);
  if (conf.promisc !== undefined && conf.promisc !== link.promisc) await s.setPromisc(link.index, conf.promisc);
  if (conf.allmulti !== undefined && conf.allmulti !== (link.allmulti ?? false)) await s.setAllmulti(link.index, conf.allmulti);
  if (conf.txQLen !== undefined && conf.txQLen !== link.txQLen) await s.setTxQLen(link.index, conf.txQLen);
}

async function add(ctx: Ctx): Promise<CniResult> {
  const { conf } = ctx;
  if (!ctx.prevResult) throw new BerthError('invalid-config', 'prevResult: berth-tuning must be chained after a plugin that creates the interface');
  const prev = ctx.prevResult;
  const mac = macOf(conf, ctx.args);
  writeSysctls(ctx);
  if (!wantsLinkChange(conf, mac)) return prev;
  return withRtnl(ctx.netns, async (s) => {
    const link = await podLink(s, ctx);
    // The first ADD's view is the original; a repeated ADD must not save our own settings over it.
    const backup: Backup = {
      network: conf.network,
      containerId: ctx.containerId,
      ifname: ctx.ifname,
      ...(mac !== undefined ? { mac: link.mac } : {}),
      ...(conf.mtu !== undefined ? { mtu: link.mtu } : {}),
      ...(conf.promisc !== undefined ? { promisc: link.promisc } : {}),
      ...(conf.allmulti !== undefined ? { allmulti: link.allmulti ?? false } : {}),
      ...(conf.txQLen !== undefined && link.txQLen !== undefined ? { txQLen: link.txQLen } : {}),
    };
    mkdirSync(conf.dataDir, { recursive: true, mode: 0o700 });
    createFileExclusive(backupPath(conf, ctx.containerId, ctx.ifname), JSON.stringify(backup), { mode: 0o600, durable: false });
    await applyLink(s, link, conf, mac);
    // The result describes the interface as it now is.
    const interfaces = (prev.interfaces ?? []).map((i) =>
      i.name === ctx.ifname && i.sandbox ? { ...i, ...(mac !== undefined ? { mac } : {}), ...(conf.mtu !== undefined && i.mtu !== undefined ? { mtu: conf.mtu } : {}) } : i,
    );
    return { ...prev, cniVersion: ctx.cniVersion, interfaces };
  });
}

function readBackup(path: string): Backup | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Backup;
  } catch {
    return undefined;
  }
}

async function del(ctx: Ctx): Promise<void> {
  const path = backupPath(ctx.conf, ctx.containerId, ctx.ifname);
  const backup = readBackup(path);
  // Nothing to put back without the saved settings, or without the namespace (the link went with it).
  if (backup && ctx.netns && netnsExists(ctx.netns)) {
    await withRtnl(ctx.netns, async (s) => {
      const link = await s.getLink(ctx.ifname);
      if (!link) return;
      const { mac, mtu, promisc, allmulti, txQLen } = backup;
      await applyLink(s, link, { ...ctx.conf, mtu, promisc, allmulti, txQLen }, mac);
    });
  }
  removeFileIfExists(path);
}

async function check(ctx: Ctx): Promise<void> {
  const { conf } = ctx;
  for (const { key, want, have } of readSysctls(ctx)) {
    if (want !== have) throw new BerthError('failed-precondition', `sysctl ${key} in ${ctx.netns} is ${JSON.stringify(have)}, want ${JSON.stringify(want)}`);
  }
  const mac = macOf(conf, ctx.args);
  if (!wantsLinkChange(conf, mac)) return;
  await withRtnl(ctx.netns, async (s) => {
    const link = await podLink(s, ctx);
    const wrong: string[] = [];
    if (mac !== undefined && mac !== link.mac) wrong.push(`mac ${link.mac} (want ${mac})`);
    if (conf.mtu !== undefined && conf.mtu !== link.mtu) wrong.push(`mtu ${link.mtu} (want ${conf.mtu})`);
    if (conf.promisc !== undefined && conf.promisc !== link.promisc) wrong.push(`promisc ${link.promisc} (want ${conf.promisc})`);
    if (conf.allmulti !== undefined && conf.allmulti !== (link.allmulti ?? false)) wrong.push(`allmulti ${link.allmulti ?? false} (want ${conf.allmulti})`);
    if (conf.txQLen !== undefined && conf.txQLen !== link.txQLen) wrong.push(`txqueuelen ${link.txQLen} (want ${conf.txQLen})`);
    if (wrong.length > 0) throw new BerthError('failed-precondition', `interface ${ctx.ifname} in ${ctx.netns} has ${wrong.join(', ')}`);
  });
}

async function gc(ctx: { conf: TuningConfig; validAttachments: CniAttachment[] }): Promise<void> {
  // Saved settings of attachments that no longer exist: their namespaces are gone, so the files
  // are all that is left. Only this network's files, found by what they say.
  if (!existsSync(ctx.conf.dataDir)) return;
  for (const file of readdirSync(ctx.conf.dataDir)) {
    if (!file.endsWith('.json')) continue;
    const backup = readBackup(join(ctx.conf.dataDir, file));
    if (!backup || backup.network !== ctx.conf.network) continue;
    if (ctx.validAttachments.some((v) => v.containerID === backup.containerId && v.ifname === backup.ifname)) continue;
    removeFileIfExists(join(ctx.conf.dataDir, file));
  }
}

export const tuningPlugin: CniPlugin<TuningConfig> = {
  name: 'berth-tuning',
  about: 'sets network sysctls, MAC, MTU, promisc, allmulticast and txqueuelen of a pod interface',
  parseConfig: parseTuningConfig,
  add,
  del,
  check,
  gc,
  // Needs nothing but the kernel.
  status: async () => {},
};
