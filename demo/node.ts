import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { errorMessage } from '../lib/errors.js';
import { repoRoot } from '../world/cni.js';
import { NodeBox, nodeBoxSkipReason } from '../world/node-box.js';
import { connectNode, installRelease, type NodeClients, type NodeServices, releaseTarball, runPodWithVolumeAndGpu, serveNode, unitProps, volumeStaging, volumeTarget, waitActive } from '../world/node-install.js';
import { registrySkipReason } from '../world/registry.js';

// The node demo, the README's main job: berth installed on a real node the way an operator does
// it, and used the way kubelet would. The node is a booted Debian 12 with systemd as PID 1 (a
// systemd-nspawn container with a network of its own, world/node-box.ts); berth goes in from
// the release tarball with `berth install`, `berth doctor` and `berth status` run inside it, a
// pod with a berth-csi volume and a (fake) berth-gpu GPU runs through the installed berthd,
// berthd is restarted under the running pod, and `berth uninstall --purge` takes berth out
// again, checked. The host only plays kubelet's parts: a registry on the node's veth, the device
// plugin registry, and the CRI/CSI calls (world/node-install.ts, shared with
// test/e2e/node-units.test.ts).

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

function show(text: string): void {
  process.stdout.write(`   ${text.trimEnd().split('\n').join('\n   ')}\n`);
}

/** Why the demo cannot run here: it must not pretend to have shown a node it could not boot. */
function demoSkipReason(): string | undefined {
  const missing = ['dist/bin/berthd', 'dist/cli/berth'].filter((f) => !existsSync(join(repoRoot, f)));
  if (missing.length) return `${missing.join(' and ')} missing: run node scripts/build.mjs first`;
  return nodeBoxSkipReason() ?? registrySkipReason();
}

/** A command inside the node, shown as the operator would see it in their shell. */
async function inNode(box: NodeBox, command: string, timeoutMs = 120_000): Promise<{ code: number; output: string }> {
  const r = await box.exec(['sh', '-c', `${command} 2>&1`], { allowFailure: true, timeoutMs });
  show(`node# ${command}`);
  show(r.stdout.trimEnd() || '(no output)');
  return { code: r.code, output: r.stdout };
}

/** What berth leaves on a node, listed from inside it; every entry must be empty after uninstall --purge. */
async function berthLeftovers(box: NodeBox): Promise<Record<string, string[]>> {
  const lines = async (script: string): Promise<string[]> => (await box.sh(`${script} 2>/dev/null || true`)).split('\n').filter(Boolean);
  return {
    units: await lines("systemctl list-unit-files --no-legend 'berth*' | cut -d' ' -f1"),
    files: await lines('find /usr/lib/berth /etc/berth /var/lib/berth /run/berth /usr/local/bin/berth /etc/cni/net.d/10-berth.conflist /etc/crictl.yaml -maxdepth 0'),
    cniPlugins: await lines('ls /opt/cni/bin | grep ^berth-'),
    mounts: (await lines('cut -d" " -f5 /proc/self/mountinfo')).filter((m) => /^\/(var\/lib\/kubelet|var\/lib\/berth|run\/berth|run\/containerd\/io\.containerd\.runtime\.v2\.task\/berth\.io)\//.test(m)),
    loopDevices: box.loops(),
  };
}

export async function runNodeDemo(): Promise<number> {
  const skip = demoSkipReason();
  if (skip) {
    process.stderr.write(`berth-demo node: cannot boot the node here: ${skip}\n\nnode demo NOT RUN\n`);
    return 1;
  }
  const started = Date.now();
  const releaseDir = mkdtempSync(join(tmpdir(), 'berth-demo-release-'));
  let box: NodeBox | undefined;
  let services: NodeServices | undefined;
  let api: NodeClients | undefined;
  let failed = false;
  try {
    step('booting the node: Debian 12 with systemd as PID 1 (systemd-nspawn), on a network of its own');
    box = await NodeBox.boot({ log: show });
    const b = box;
    show(`node ${b.name}: ${(await b.sh('. /etc/os-release; echo "$PRETTY_NAME"')).trim()}, PID 1 is ${(await b.sh('cat /proc/1/comm')).trim()}, systemd says "${(await b.exec(['systemctl', 'is-system-running'], { allowFailure: true })).stdout.trim()}"`);
    show(`its network: eth0 ${b.nodeAddress}/30, a veth to the host (${b.hostLink} ${b.hostAddress}) in network namespace ${b.netns}; nothing it does touches the host's network`);
    show(`baked in (the node has no internet): ${(await b.sh("dpkg-query -W -f='${Package} ${Version}\\n' containerd runc iptables xfsprogs")).trim().split('\n').join(', ')}`);

    step(`on the host, kubelet's parts: a registry on ${b.hostAddress} (the node's way out) and the device plugin registry`);
    services = await serveNode(b);
    show(`registry ${services.registry.host} holding berth-test/pause:1 and berth-test/busybox:1 (built from Debian's busybox)`);
    show(`fake kubelet on ${join('/var/lib/kubelet/device-plugins', basename(services.kubelet.socket))} inside the node`);

    step('making the release tarball (scripts/release.mjs): bundles, native addons, units, manifests, the Node runtime');
    const tarball = releaseTarball(releaseDir);
    show(`${basename(tarball)}, ${(statSync(tarball).size / 2 ** 20).toFixed(1)} MiB; copied into the node and unpacked at /opt/berth`);

    step('berth install, in the node, as root (packages, files, units; berthd started and waited for)');
    show('node# /opt/berth/bin/berth install --config /root/berth.yaml --pod-cidr 10.244.0.0/24');
    show((await installRelease(b, tarball, services.registry.host)).trimEnd());
    const props = await waitActive(b, 'berthd');
    show(`berthd.service: ${props.ActiveState} (${props.SubState}), main PID ${props.MainPID}`);

    step('berth doctor, in the node: can this node run pods?');
    const doctor = await inNode(b, 'berth doctor');
    if (doctor.code !== 0) throw new Error(`berth doctor exited ${doctor.code}: the node cannot run pods`);

    step('berth status, in the node');
    const status = await inNode(b, 'berth status');
    if (status.code !== 0) throw new Error(`berth status exited ${status.code}`);

    api = connectNode(b);
    const pod = await runPodWithVolumeAndGpu(b, api, services.kubelet, services.registry.host, { step, show });
    step('what the container sees: the file it wrote on the volume, its GPU, its address on the pod network');
    show(`container# cat /data/hello; echo "gpu=$NVIDIA_VISIBLE_DEVICES"; ls /dev/nvidia1; ip -4 -o addr show eth0\n${pod.seen}`);
    show(`node# cat ${volumeTarget}/hello\n${pod.fromNode}`);
    const ip = /inet (10\.244\.0\.\d+)\/24/.exec(pod.seen)?.[1];
    if (!pod.seen.includes('written-in-the-pod') || pod.fromNode !== 'written-in-the-pod\n') throw new Error('the file the container wrote is not on the volume');
    if (!pod.seen.includes(`gpu=${pod.gpuUuid}`) || !pod.seen.includes('/dev/nvidia1')) throw new Error('the allocated GPU is not in the container');
    if (!ip) throw new Error('the container has no address on the pod network 10.244.0.0/24');
    if (pod.loops.length === 0) throw new Error('the volume has no loop device');

    step('systemctl restart berthd, with the pod running (KillMode=process: containers are not berthd\'s to stop)');
    const before = await unitProps(b, 'berthd');
    const shims = await b.sh('pgrep -x containerd-shim | sort');
    await b.sh('systemctl restart berthd', { timeoutMs: 120_000 });
    const after = await waitActive(b, 'berthd', before.MainPID);
    show(`berthd main PID ${before.MainPID} -> ${after.MainPID}; containerd shims ${shims === (await b.sh('pgrep -x containerd-shim | sort')) ? 'untouched' : 'CHANGED'}`);
    const { containers } = await api.runtime.listContainers({ filter: undefined });
    const app = containers.find((c) => c.id === pod.containerId);
    const stateName = ['CREATED', 'RUNNING', 'EXITED', 'UNKNOWN'][app?.state ?? 3];
    const hello = (await api.runtime.execSync({ containerId: pod.containerId, cmd: ['cat', '/data/hello'], timeout: 10n })).stdout.toString();
    show(`container ${pod.containerId.slice(0, 12)} (${app?.metadata?.name}): ${app ? stateName : 'NOT LISTED'}; /data/hello: ${hello.trim()}`);
    if (app?.state !== 1 || hello !== 'written-in-the-pod\n') throw new Error('the pod did not survive a restart of berthd');

    step('removing the pod and its volume, as kubelet would (StopPodSandbox, RemovePodSandbox, NodeUnpublish, NodeUnstage, DeleteVolume)');
    await api.runtime.stopPodSandbox({ podSandboxId: pod.podId });
    await api.runtime.removePodSandbox({ podSandboxId: pod.podId });
    await api.csiNode.nodeUnpublishVolume({ volumeId: pod.volumeId, targetPath: volumeTarget });
    await api.csiNode.nodeUnstageVolume({ volumeId: pod.volumeId, stagingTargetPath: volumeStaging });
    await api.csiController.deleteVolume({ volumeId: pod.volumeId });
    show(`pods left: ${(await api.runtime.listPodSandbox({ filter: undefined })).items.length}`);
    api.close();
    api = undefined;

    step('berth uninstall --purge, in the node');
    const uninstall = await inNode(b, 'berth uninstall --purge');
    if (uninstall.code !== 0) throw new Error(`berth uninstall --purge exited ${uninstall.code}`);

    step('nothing of berth is left: units, /usr/lib/berth, /etc/berth, state, CNI plugins, mounts, loop devices');
    const left = await berthLeftovers(b);
    show(Object.entries(left).map(([what, items]) => `${what}: ${items.length ? items.join(' ') : 'none'}`).join('\n'));
    show(`containerd (not berth's) still ${(await b.exec(['systemctl', 'is-active', 'containerd'], { allowFailure: true })).stdout.trim()}; /opt/berth (the unpacked tarball) is the operator's to delete`);
    if (Object.values(left).some((items) => items.length)) throw new Error(`berth left something behind: ${JSON.stringify(left)}`);
  } catch (err) {
    failed = true;
    process.stderr.write(`\ndemo failed: ${errorMessage(err)}\n`);
    if (box?.running) process.stderr.write(`--- berthd's journal (tail) ---\n${await box.journal('berthd', 60).catch(() => '(unreadable)')}\n`);
  } finally {
    api?.close();
    await services?.stop().catch(() => undefined);
    if (box) {
      step(`destroying the node ${box.name} (its processes, mounts, loop devices, cgroups, network and directory)`);
      await box.destroy().catch((err: unknown) => {
        failed = true;
        process.stderr.write(`destroying the node failed: ${errorMessage(err)}\n`);
      });
    }
    rmSync(releaseDir, { recursive: true, force: true });
  }
  process.stdout.write(failed ? '\nnode demo FAILED\n' : `\nnode demo passed (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  return failed ? 1 : 0;
}
