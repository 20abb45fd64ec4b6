import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../lib/errors.js';
import { remoteCommand, wsPortForward } from '../lib/stream/client.js';
import { Mount, PodSandboxConfig, Protocol, type ImageSpec } from '../proto/gen/runtime/v1/api.js';
import { containerConfig, CriWorld, imageSpec } from '../world/cri.js';
import { bridgePorts, leaseFiles } from '../world/pod-network.js';
import { allocateGpu, injectXid, type DemoGpu } from './gpu.js';
import { provisionVolume, releaseVolume, reportUsage, type DemoVolume } from './volume.js';

// The pod demo: what kubelet does to run a pod, through berth-cri. It starts a private
// containerd and a local registry holding images built from Debian's busybox (the same world
// the tests use; no internet), then berth-cri, and runs a web server pod reached through a
// host port, with a berth-csi volume mounted at /data whose size limit is real, execs into it
// (ExecSync, then a streaming exec), port-forwards into it, reads its CRI log, and removes it
// again with its volume, checking nothing leaked.

const image = (world: CriWorld, name: string): ImageSpec => imageSpec(world.image(name));

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

function show(text: string): void {
  process.stdout.write(`   ${text.trimEnd().split('\n').join('\n   ')}\n`);
}

export async function runCriDemo(): Promise<number> {
  step('starting containerd (private), a local registry with the demo images, and berth-cri');
  const world = await CriWorld.start();
  let failed = false;
  let volume: DemoVolume | undefined;
  let gpu: DemoGpu | undefined;
  try {
    const version = await world.runtime.version({ version: '' });
    show(`${version.runtimeName} ${version.runtimeVersion} (CRI ${version.runtimeApiVersion}) on ${world.cri.socket}`);
    const status = await world.runtime.status({ verbose: false });
    show(status.status!.conditions.map((c) => `${c.type}=${c.status}`).join(' '));

    step('PullImage httpd (a busybox httpd image) from the local registry');
    const pulled = await world.images.pullImage({ image: image(world, 'httpd'), auth: undefined, sandboxConfig: undefined });
    show(`${world.image('httpd')} -> ${pulled.imageRef}`);

    const hostPort = 18080;
    step(`RunPodSandbox "web" with port 80 published on host port ${hostPort}`);
    const uid = `demo-${Date.now()}`;
    volume = await provisionVolume(uid, step, show);
    gpu = await allocateGpu(step, show);

    const pod = PodSandboxConfig.fromPartial({
      metadata: { name: 'web', namespace: 'demo', uid, attempt: 0 },
      hostname: 'web',
      logDirectory: join(world.podLogDir, 'web'),
      dnsConfig: { servers: ['10.96.0.10'], searches: ['demo.svc.cluster.local'], options: ['ndots:5'] },
      portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort, hostIp: '' }],
      linux: { cgroupParent: '', sysctls: {} },
    });
    const { podSandboxId } = await world.runtime.runPodSandbox({ config: pod, runtimeHandler: '' });
    const podStatus = (await world.runtime.podSandboxStatus({ podSandboxId, verbose: false })).status!;
    show(`pod ${podSandboxId.slice(0, 12)}: IP ${podStatus.network?.ip}`);

    step('CreateContainer + StartContainer "httpd", with the volume at /data and the fake GPU');
    const config = containerConfig('httpd', world.image('httpd'), {
      mounts: [Mount.fromPartial({ containerPath: '/data', hostPath: volume.target })],
      devices: gpu.container.devices,
      envs: gpu.container.envs,
    });
    const { containerId } = await world.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
    await world.runtime.startContainer({ containerId });
    show(`container ${containerId.slice(0, 12)} running`);

    step(`GET http://127.0.0.1:${hostPort}/ (host port -> pod)`);
    let body = '';
    for (let i = 0; i < 50 && !body; i++) {
      body = await fetch(`http://127.0.0.1:${hostPort}/index.html`).then((r) => r.text()).catch(() => '');
      if (!body) await sleep(100);
    }
    show(body || '(no answer)');
    if (body !== 'hello from berth\n') throw new Error('the web server did not answer through the host port');

    step('ExecSync: hostname, resolv.conf, id');
    const exec = await world.runtime.execSync({ containerId, cmd: ['sh', '-c', 'hostname; cat /etc/resolv.conf; id'], timeout: 10n });
    show(exec.stdout.toString());

    step('the volume from inside the pod: df, then fill it past its size (a real limit, not a directory)');
    const fill = await world.runtime.execSync({ containerId, cmd: ['sh', '-c', 'df -k /data | tail -1; echo hello > /data/hello; dd if=/dev/zero of=/data/fill bs=1M count=100 2>&1; ls -s /data/fill'], timeout: 20n });
    show(fill.stdout.toString() + fill.stderr.toString());
    if (!/No space left/.test(fill.stdout.toString() + fill.stderr.toString())) throw new Error('writing 100 MiB into a 64 MiB volume did not fail');
    await reportUsage(volume, show);

    step('the GPU from inside the pod: its device node and NVIDIA_VISIBLE_DEVICES');
    const seen = await world.runtime.execSync({ containerId, cmd: ['sh', '-c', 'echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"; ls -l /dev/nvidia*'], timeout: 10n });
    show(seen.stdout.toString() + seen.stderr.toString());
    if (!seen.stdout.toString().includes(`NVIDIA_VISIBLE_DEVICES=${gpu.uuid}`) || !/\/dev\/nvidia1/.test(seen.stdout.toString())) throw new Error('the allocated GPU is not in the container');

    step('Exec over SPDY (what kubectl exec -i does): stdin in, stdout and the exit code back');
    const { url: execUrl } = await world.runtime.exec({ containerId, cmd: ['sh', '-c', 'tr a-z A-Z; exit 3'], stdin: true, stdout: true, stderr: true, tty: false });
    show(`one-time URL ${execUrl}`);
    const streamed = await remoteCommand(execUrl, { stdin: 'typed into kubectl exec\n' });
    show(`${streamed.protocol}: stdout ${JSON.stringify(streamed.stdout.toString())}, exit code ${streamed.exitCode}`);
    if (streamed.stdout.toString() !== 'TYPED INTO KUBECTL EXEC\n' || streamed.exitCode !== 3) throw new Error('streaming exec did not round-trip');

    step('PortForward over WebSocket channels (v4.channel.k8s.io): GET / inside the pod');
    const { url: pfUrl } = await world.runtime.portForward({ podSandboxId, port: [80] });
    const forwarded = await wsPortForward(pfUrl, [80], 'GET /index.html HTTP/1.0\r\n\r\n');
    const response = forwarded.data[0]!.toString();
    show(response.split('\r\n')[0] + ' ... ' + response.slice(response.indexOf('\r\n\r\n') + 4).trim());
    if (!response.endsWith('hello from berth\n')) throw new Error(`port-forward failed: ${forwarded.errors.join(' ')}`);

    step('the container log (CRI format)');
    const { status: cs } = await world.runtime.containerStatus({ containerId, verbose: false });
    show(readFileSync(cs!.logPath, 'utf8').split('\n').slice(0, 5).join('\n'));

    step('StopPodSandbox + RemovePodSandbox (twice: both are idempotent)');
    await world.runtime.stopPodSandbox({ podSandboxId });
    await world.runtime.removePodSandbox({ podSandboxId });
    await world.runtime.stopPodSandbox({ podSandboxId });
    await world.runtime.removePodSandbox({ podSandboxId });

    await injectXid(gpu, step, show);
    const volumeLeft = await releaseVolume(volume, step, show);
    if (Object.values(volumeLeft).some((v) => v !== 0)) throw new Error(`the volume leaked: ${JSON.stringify(volumeLeft)}`);

    step('nothing leaked');
    const left = {
      pods: (await world.runtime.listPodSandbox({ filter: undefined })).items.length,
      containers: (await world.runtime.listContainers({ filter: undefined })).containers.length,
      bridgePorts: bridgePorts(world.bridge).length,
      leases: leaseFiles(join(world.dir, 'ipam'), 'berth-test').length,
      natRules: execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(podSandboxId)).length,
    };
    show(JSON.stringify(left));
    if (Object.values(left).some((v) => v !== 0)) throw new Error(`something leaked: ${JSON.stringify(left)}`);
  } catch (err) {
    failed = true;
    process.stderr.write(`\ndemo failed: ${errorMessage(err)}\n--- berth-cri log (tail) ---\n${world.criLog().slice(-3000)}\n`);
  } finally {
    if (volume && failed) process.stderr.write(`--- berth-csi log (tail) ---\n${volume.driver.log().slice(-2000)}\n`);
    await volume?.driver.stop();
    await gpu?.world.stop();
    await world.stop();
  }
  process.stdout.write(failed ? '\npod demo FAILED\n' : '\npod demo passed\n');
  return failed ? 1 : 0;
}
