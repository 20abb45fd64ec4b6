import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { forwardPort, remoteCommand, spdyConnect, spdyOverWebSocket, wsPortForward, wsRemoteCommand } from '../../lib/stream/client.js';
import { ContainerState, LinuxPodSandboxConfig, NamespaceMode, type ContainerConfig, type PodSandboxConfig } from '../../proto/gen/runtime/v1/api.js';
import { containerConfig, type CriWorld, imageSpec, podSandboxConfig } from '../../world/cri.js';
import { startContainer, useCriWorld } from '../../world/cri-suite.js';
import { repoRoot } from '../../world/cni.js';
import { isRoot } from '../../world/netns.js';

// Exec, Attach and PortForward through berth-cri's streaming server, driven by berth's own
// SPDY client the way kubectl and kubelet's proxy drive it, against real containers.

/** An Exec URL for `cmd`, with stdout, and stderr unless there is a tty. */
async function execUrlOf(world: CriWorld, containerId: string, cmd: string[], opts: { stdin?: boolean; tty?: boolean }): Promise<string> {
  return (await world.runtime.exec({ containerId, cmd, stdin: opts.stdin ?? false, stdout: true, stderr: !opts.tty, tty: opts.tty ?? false })).url;
}

describe.skipIf(!isRoot)('berth-cri streaming', () => {
  let world!: CriWorld;
  let n = 0;
  useCriWorld(['busybox', 'httpd'], (w) => (world = w));
  const start = (config: ContainerConfig, pod?: PodSandboxConfig): Promise<{ id: string; podId: string }> => startContainer(world, config, pod);
  const sleeper = (): ContainerConfig => containerConfig(`c${++n}`, world.image('busybox'), { command: ['sleep', '3600'] });
  const execUrl = (containerId: string, cmd: string[], opts: { stdin?: boolean; tty?: boolean } = {}): Promise<string> => execUrlOf(world, containerId, cmd, opts);

  it('exec without a tty: stdout and stderr apart, the exit code in the v4 status', async () => {
    const c = await start(sleeper());
    const r = await remoteCommand(await execUrl(c.id, ['sh', '-c', 'echo out; echo err >&2; exit 3']), {});
    expect(r.protocol).toBe('v4.channel.k8s.io');
    expect(r.stdout.toString()).toBe('out\n');
    expect(r.stderr.toString()).toBe('err\n');
    expect(r.exitCode).toBe(3);
    expect(JSON.parse(r.status)).toMatchObject({ status: 'Failure', reason: 'NonZeroExitCode' });
    const ok = await remoteCommand(await execUrl(c.id, ['true']), {});
    expect(ok.exitCode).toBe(0);
  });

  it('exec feeds stdin and the command sees its end; older protocol versions work too', async () => {
    const c = await start(sleeper());
    const r = await remoteCommand(await execUrl(c.id, ['sh', '-c', 'cat; echo done'], { stdin: true }), { stdin: 'hello\nworld\n' });
    expect(r.stdout.toString()).toBe('hello\nworld\ndone\n');
    const v2 = await remoteCommand(await execUrl(c.id, ['sh', '-c', 'echo old; exit 2']), { protocols: ['v2.channel.k8s.io'] });
    expect(v2.protocol).toBe('v2.channel.k8s.io');
    expect(v2.stdout.toString()).toBe('old\n');
    expect(v2.status).toMatch(/non-zero exit code/);
  });

  it('exec with a tty gets a terminal of the size the client sends', async () => {
    const c = await start(sleeper());
    const r = await remoteCommand(await execUrl(c.id, ['sh', '-c', 'sleep 0.5; stty size; tty'], { tty: true }), {
      tty: true,
      resize: [{ width: 101, height: 37 }],
    });
    const out = r.stdout.toString().replace(/\r/g, '');
    expect(out).toContain('37 101');
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    expect(r.exitCode).toBe(0);
  });

  it('refuses exec into an unknown or stopped container and bad stdio flags', async () => {
    await expect(world.runtime.exec({ containerId: 'f'.repeat(64), cmd: ['true'], stdin: false, stdout: true, stderr: true, tty: false })).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
    const c = await start(containerConfig(`c${++n}`, world.image('busybox'), { command: ['true'] }));
    for (let i = 0; i < 50; i++) {
      const { status } = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
      if (status?.state === ContainerState.CONTAINER_EXITED) break;
      await sleep(100);
    }
    await expect(world.runtime.exec({ containerId: c.id, cmd: ['true'], stdin: false, stdout: true, stderr: true, tty: false })).rejects.toMatchObject({ code: grpcStatus.FAILED_PRECONDITION });
    const live = await start(sleeper());
    await expect(world.runtime.exec({ containerId: live.id, cmd: ['true'], stdin: false, stdout: false, stderr: false, tty: false })).rejects.toMatchObject({ code: grpcStatus.INVALID_ARGUMENT });
    // A URL works once.
    const url = await execUrl(live.id, ['true']);
    await remoteCommand(url, {});
    await expect(remoteCommand(url, {})).rejects.toThrow(/404/);
  });

  it('a client that hangs up mid-stream leaves no process behind', async () => {
    const c = await start(sleeper());
    let hangUp!: () => void;
    const abort = new Promise<void>((resolve) => (hangUp = resolve));
    const running = remoteCommand(await execUrl(c.id, ['sh', '-c', 'echo started; exec sleep 1234']), {
      abort,
      onStdout: (chunk) => {
        if (chunk.toString().includes('started')) hangUp();
      },
    });
    await running;
    let left = '';
    for (let i = 0; i < 50; i++) {
      left = (await world.runtime.execSync({ containerId: c.id, cmd: ['sh', '-c', 'pgrep "sleep 1234" || true'], timeout: 5n })).stdout.toString().trim();
      if (!left) break;
      await sleep(100);
    }
    expect(left).toBe('');
    // One that upgrades and leaves before opening any stream: the exec process made for it
    // meanwhile is removed with its FIFOs.
    const { session } = await spdyConnect(await execUrl(c.id, ['echo', 'never'], { stdin: true }), ['v4.channel.k8s.io']);
    await sleep(200);
    session.close(true);
    let execFifos: string[] = [];
    for (let i = 0; i < 50; i++) {
      execFifos = (await world.leftoverFifos(0)).filter((f) => f.includes('-exec-'));
      if (execFifos.length === 0) break;
      await sleep(100);
    }
    expect(execFifos).toEqual([]);
  });

  it('an exec is begun when its URL is issued, at most 16 waiting; every URL works, prepared or not, and leaves nothing', async () => {
    const c = await start(sleeper());
    const urls: string[] = [];
    for (let i = 0; i < 20; i++) urls.push(await execUrl(c.id, ['echo', `n${i}`]));
    // Each begun exec has its stdout and stderr FIFOs; the last four URLs began nothing.
    let execFifos: string[] = [];
    for (let i = 0; i < 50; i++) {
      execFifos = (await world.leftoverFifos(0)).filter((f) => f.includes('-exec-'));
      if (execFifos.length >= 32) break;
      await sleep(100);
    }
    expect(execFifos).toHaveLength(32);
    // Used in reverse: the unprepared ones first, then the prepared.
    for (let i = 19; i >= 0; i--) {
      const r = await remoteCommand(urls[i]!, {});
      expect(r.stdout.toString()).toBe(`n${i}\n`);
      expect(r.exitCode).toBe(0);
    }
    for (let i = 0; i < 50; i++) {
      execFifos = (await world.leftoverFifos(0)).filter((f) => f.includes('-exec-'));
      if (execFifos.length === 0) break;
      await sleep(100);
    }
    expect(execFifos).toEqual([]);
  });

  it('berth exec runs a command with piped stdin and exits with its code', async () => {
    const c = await start(sleeper());
    const berth = join(repoRoot, 'dist', 'cli', 'berth');
    const run = (args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [berth, 'exec', '--endpoint', `unix://${world.cri.socket}`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
        child.stdin.end(input);
      });
    expect(await run(['-i', c.id, '--', 'sh', '-c', 'cat; echo err >&2; exit 7'], 'piped through berth exec\n')).toEqual({ code: 7, stdout: 'piped through berth exec\n', stderr: 'err\n' });
    expect(await run([c.id, 'echo', 'no stdin'])).toEqual({ code: 0, stdout: 'no stdin\n', stderr: '' });
    const missing = await run(['nosuchcontainer', 'true']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/Exec: .*nosuchcontainer/);
    expect((await run([c.id])).code).toBe(2);
  });

  it('attach shows the container output and feeds its stdin', async () => {
    const c = await start(containerConfig(`c${++n}`, world.image('busybox'), { command: ['sh', '-c', 'echo ready; while read line; do echo "got $line"; done'], stdin: true, stdinOnce: false }));
    const { url } = await world.runtime.attach({ containerId: c.id, stdin: true, stdout: true, stderr: true, tty: false });
    let seen = '';
    let hangUp!: () => void;
    const abort = new Promise<void>((resolve) => (hangUp = resolve));
    const { PassThrough } = await import('node:stream');
    const stdin = new PassThrough();
    const attached = remoteCommand(url, {
      stdin,
      abort,
      onStdout: (chunk) => {
        seen += chunk.toString();
        if (seen.includes('got ping')) hangUp();
      },
    });
    await sleep(300);
    stdin.write('ping\n');
    await attached;
    expect(seen).toContain('got ping');
  });

  it('attach works for several clients at once and again after berth-cri is killed and restarted', async () => {
    const c = await start(containerConfig(`c${++n}`, world.image('busybox'), { command: ['sh', '-c', 'while read line; do echo "got $line"; done'], stdin: true, stdinOnce: false }));
    const { PassThrough } = await import('node:stream');
    // Attach until `want` shows up in the output; the caller writes through the returned stdin.
    const attach = async (want: string): Promise<{ stdin: InstanceType<typeof PassThrough>; done: Promise<string> }> => {
      const { url } = await world.runtime.attach({ containerId: c.id, stdin: true, stdout: true, stderr: true, tty: false });
      const stdin = new PassThrough();
      let seen = '';
      let hangUp!: () => void;
      const abort = new Promise<void>((resolve) => (hangUp = resolve));
      const done = remoteCommand(url, {
        stdin,
        abort,
        onStdout: (chunk) => {
          seen += chunk.toString();
          if (seen.includes(want)) hangUp();
        },
      }).then(() => seen);
      await sleep(300);
      return { stdin, done };
    };
    // Two clients see each other's input echoed by the one container.
    const a = await attach('got from-b');
    const b = await attach('got from-b');
    a.stdin.write('from-a\n');
    await sleep(100);
    b.stdin.write('from-b\n');
    expect(await a.done).toBe('got from-a\ngot from-b\n');
    expect(await b.done).toBe('got from-a\ngot from-b\n');

    await world.killCri();
    await world.startCri();
    const after = await attach('got after-restart');
    after.stdin.write('after-restart\n');
    expect(await after.done).toContain('got after-restart');
    const status = await world.runtime.containerStatus({ containerId: c.id, verbose: false });
    expect(status.status?.state).toBe(ContainerState.CONTAINER_RUNNING);
  });

  it('attach with StdinOnce: the end of the client stdin closes the container stdin', async () => {
    const c = await start(containerConfig(`c${++n}`, world.image('busybox'), { command: ['sh', '-c', 'cat; echo "stdin closed"; sleep 3600'], stdin: true, stdinOnce: true }));
    const { url } = await world.runtime.attach({ containerId: c.id, stdin: true, stdout: true, stderr: true, tty: false });
    let seen = '';
    let hangUp!: () => void;
    const abort = new Promise<void>((resolve) => (hangUp = resolve));
    await remoteCommand(url, {
      stdin: 'last words\n',
      abort,
      onStdout: (chunk) => {
        seen += chunk.toString();
        if (seen.includes('stdin closed')) hangUp();
      },
    });
    expect(seen).toBe('last words\nstdin closed\n');
  });

  it('port-forwards 16 MB intact, 3 transfers at once on one connection', async () => {
    const c = await start(
      containerConfig(`big${++n}`, world.image('busybox'), {
        command: ['sh', '-c', 'dd if=/dev/urandom of=/tmp/big bs=1M count=16 2>/dev/null && sha256sum /tmp/big > /tmp/sum && exec httpd -f -p 8080 -h /tmp'],
      }),
    );
    let sum = '';
    for (let i = 0; i < 100 && !sum; i++) {
      sum = (await world.runtime.execSync({ containerId: c.id, cmd: ['cat', '/tmp/sum'], timeout: 5n })).stdout.toString().split(' ')[0] ?? '';
      if (!sum) await sleep(100);
    }
    expect(sum).toMatch(/^[0-9a-f]{64}$/);
    const { url } = await world.runtime.portForward({ podSandboxId: c.podId, port: [8080] });
    const { session } = await spdyConnect(url, ['portforward.k8s.io']);
    try {
      const fetchOnce = async (i: number): Promise<string> => {
        const { data } = forwardPort(session, 8080, i);
        const hash = createHash('sha256');
        let head = Buffer.alloc(0);
        let inBody = false;
        data.on('data', (d: Buffer) => {
          if (inBody) return void hash.update(d);
          head = Buffer.concat([head, d]);
          const end = head.indexOf('\r\n\r\n');
          if (end >= 0) {
            inBody = true;
            hash.update(head.subarray(end + 4));
          }
        });
        await data.replied;
        data.end('GET /big HTTP/1.0\r\n\r\n');
        await new Promise((r) => data.on('end', r));
        return hash.digest('hex');
      };
      expect(await Promise.all([0, 1, 2].map(fetchOnce))).toEqual([sum, sum, sum]);
    } finally {
      session.close(true);
    }
  });

  it('port-forwards into a pod and into a host-network pod, 20 connections at once', async () => {
    const web = await start(containerConfig(`web${++n}`, world.image('httpd'), {}));
    const hostPort = 18000 + Math.floor(Math.random() * 1000);
    const hostPod = podSandboxConfig(world, `hostnet${++n}`, {
      linux: LinuxPodSandboxConfig.fromPartial({ securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } }),
    });
    const hostWeb = await start(containerConfig(`hweb${++n}`, world.image('httpd'), { envs: [{ key: 'PORT', value: Buffer.from(String(hostPort)) }] }), hostPod);
    for (const [podId, port, count] of [
      [web.podId, 80, 20],
      [hostWeb.podId, hostPort, 2],
    ] as const) {
      const { url } = await world.runtime.portForward({ podSandboxId: podId, port: [port] });
      const { session } = await spdyConnect(url, ['portforward.k8s.io']);
      try {
        const get = async (i: number): Promise<string> => {
          for (let attempt = 0; ; attempt++) {
            const { data, error } = forwardPort(session, port, i * 100 + attempt);
            let body = '';
            let errText = '';
            error.on('data', (d: Buffer) => (errText += d.toString()));
            data.on('data', (d: Buffer) => (body += d.toString()));
            await data.replied;
            data.end('GET /index.html HTTP/1.0\r\n\r\n');
            await new Promise((r) => data.on('end', r));
            if (body || attempt >= 20) return body || errText;
            await sleep(100); // the server may still be starting
          }
        };
        const bodies = await Promise.all(Array.from({ length: count }, (_, i) => get(i)));
        for (const b of bodies) expect(b).toContain('hello from berth');
      } finally {
        session.close(true);
      }
    }
  });
});

describe.skipIf(!isRoot)('berth-cri streaming over WebSocket', () => {
  let world!: CriWorld;
  let n = 0;
  useCriWorld(['busybox', 'httpd'], (w) => (world = w));
  const start = (config: ContainerConfig): Promise<{ id: string; podId: string }> => startContainer(world, config);
  const execUrl = (containerId: string, cmd: string[], opts: { stdin?: boolean; tty?: boolean } = {}): Promise<string> => execUrlOf(world, containerId, cmd, opts);

  it('exec over v5, v4, base64 and v1 channels: output apart, stdin closed by v5, the exit status', async () => {
    const c = await start(containerConfig(`c${++n}`, world.image('busybox'), { command: ['sleep', '3600'] }));
    const v5 = await wsRemoteCommand(await execUrl(c.id, ['sh', '-c', 'cat; echo err >&2; exit 4'], { stdin: true }), { stdin: 'through stdin\n' });
    expect(v5.protocol).toBe('v5.channel.k8s.io');
    expect(v5.stdout.toString()).toBe('through stdin\n');
    expect(v5.stderr.toString()).toBe('err\n');
    expect(v5.exitCode).toBe(4);
    for (const protocol of ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io']) {
      const r = await wsRemoteCommand(await execUrl(c.id, ['sh', '-c', 'printf "\\001\\377binary"; exit 0']), { protocols: [protocol] });
      expect(r.protocol).toBe(protocol);
      expect(r.stdout).toEqual(Buffer.concat([Buffer.from([1, 255]), Buffer.from('binary')]));
      expect(JSON.parse(r.status)).toMatchObject({ status: 'Success' });
    }
    const v1 = await wsRemoteCommand(await execUrl(c.id, ['sh', '-c', 'echo old; exit 2']), { protocols: ['base64.channel.k8s.io'] });
    expect(v1.stdout.toString()).toBe('old\n');
    expect(v1.status).toMatch(/non-zero exit code/);
  });

  it('exec with a tty over v5 gets the size it sends', async () => {
    const c = await start(containerConfig(`c${++n}`, world.image('busybox'), { command: ['sleep', '3600'] }));
    const r = await wsRemoteCommand(await execUrl(c.id, ['sh', '-c', 'sleep 0.5; stty size'], { tty: true }), { tty: true, resize: [{ width: 101, height: 33 }] });
    expect(r.stdout.toString().trim()).toBe('33 101');
    expect(r.exitCode).toBe(0);
  });

  it('attach over v4 channels sees the container output', async () => {
    const c = await start(containerConfig(`c${++n}`, world.image('busybox'), { command: ['sh', '-c', 'while read line; do echo "got $line"; done'], stdin: true }));
    const { url } = await world.runtime.attach({ containerId: c.id, stdin: true, stdout: true, stderr: true, tty: false });
    const { PassThrough } = await import('node:stream');
    const stdin = new PassThrough();
    let seen = '';
    let hangUp!: () => void;
    const abort = new Promise<void>((resolve) => (hangUp = resolve));
    const attached = wsRemoteCommand(url, {
      stdin,
      abort,
      protocols: ['v4.channel.k8s.io'],
      onStdout: (chunk) => {
        seen += chunk.toString();
        if (seen.includes('got over websocket')) hangUp();
      },
    });
    await sleep(300);
    stdin.write('over websocket\n');
    await attached;
    expect(seen).toBe('got over websocket\n');
  });

  it('port-forwards over channels (binary and base64, two ports) and over a SPDY tunnel', async () => {
    const web = await start(containerConfig(`web${++n}`, world.image('httpd'), {}));
    const request = 'GET /index.html HTTP/1.0\r\n\r\n';
    for (const protocol of ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io']) {
      let result: { data: Buffer[]; errors: string[] } = { data: [], errors: [] };
      for (let attempt = 0; attempt < 20; attempt++) {
        const { url } = await world.runtime.portForward({ podSandboxId: web.podId, port: [80, 81] });
        result = await wsPortForward(url, [80, 81], request, protocol);
        if (result.data[0]?.length) break;
        await sleep(100); // the server may still be starting
      }
      expect(result.data[0]!.toString()).toContain('hello from berth');
      // Nothing listens on 81: its error channel says so, and port 80's is clean.
      expect(result.errors[1]).toMatch(/error forwarding port 81/);
      expect(result.errors[0]).toBe('');
    }
    const { url } = await world.runtime.portForward({ podSandboxId: web.podId, port: [80] });
    const session = await spdyOverWebSocket(url);
    try {
      const bodies = await Promise.all(
        Array.from({ length: 5 }, async (_, i) => {
          const { data } = forwardPort(session, 80, i);
          let body = '';
          data.on('data', (d: Buffer) => (body += d.toString()));
          await data.replied;
          data.end(request);
          await new Promise((r) => data.on('end', r));
          return body;
        }),
      );
      for (const b of bodies) expect(b).toContain('hello from berth');
    } finally {
      session.close(true);
    }
  });
});

// berth's SPDY and WebSocket code against a Go peer: containerd's own CRI plugin serves the same
// streaming protocols through moby/spdystream and gorilla-era wsstream, so its streaming server
// checks our framing, header compression and channel handling from the other side.
describe.skipIf(!isRoot)("berth's streaming client against containerd's CRI streaming server", () => {
  let world!: CriWorld;
  useCriWorld([], (w) => (world = w), { containerdCri: true });

  it('exec with stdin and port-forward, over SPDY', async () => {
    const { credentials } = await import('@grpc/grpc-js');
    const { ImageServiceClient, RuntimeServiceClient } = await import('../../proto/gen/runtime/v1/api.js');
    const { promisify, runtimeMethods } = await import('../../world/cri.js');
    const cd = promisify(new RuntimeServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure()), runtimeMethods);
    const images = promisify(new ImageServiceClient(`unix://${world.containerd.socket}`, credentials.createInsecure()), ['pullImage'] as const);
    for (const name of ['httpd', 'pause']) await images.pullImage({ image: imageSpec(world.image(name)), auth: undefined, sandboxConfig: undefined });
    const pod = podSandboxConfig(world, 'go-peer', { metadata: { name: 'go-peer', namespace: 'go-peer', uid: `go-peer-${Date.now()}`, attempt: 0 } });
    const { podSandboxId } = await cd.runPodSandbox({ config: pod, runtimeHandler: '' });
    try {
      const { containerId } = await cd.createContainer({ podSandboxId, config: containerConfig('web', world.image('httpd'), {}), sandboxConfig: pod });
      await cd.startContainer({ containerId });
      // Several execs on fresh connections, and one with many header blocks on one connection
      // (port-forward pairs), so the peer inflates a long run of our header blocks.
      for (let i = 0; i < 3; i++) {
        const { url } = await cd.exec({ containerId, cmd: ['sh', '-c', 'cat; echo err >&2; exit 5'], stdin: true, stdout: true, stderr: true, tty: false });
        const r = await remoteCommand(url, { stdin: `round ${i}\n` });
        expect(r.protocol).toBe('v4.channel.k8s.io');
        expect(r.stdout.toString()).toBe(`round ${i}\n`);
        expect(r.stderr.toString()).toBe('err\n');
        expect(r.exitCode).toBe(5);
      }
      const { url } = await cd.portForward({ podSandboxId, port: [80] });
      const { session } = await spdyConnect(url, ['portforward.k8s.io']);
      try {
        for (let i = 0; i < 10; i++) {
          let body = '';
          for (let attempt = 0; attempt < 20 && !body.includes('hello from berth'); attempt++) {
            const { data, error } = forwardPort(session, 80, i * 100 + attempt);
            error.resume();
            body = '';
            data.on('data', (d: Buffer) => (body += d.toString()));
            await data.replied;
            data.end('GET /index.html HTTP/1.0\r\n\r\n');
            await new Promise((r) => data.on('end', r));
            if (!body) await sleep(100); // the server may still be starting
          }
          expect(body).toContain('hello from berth');
        }
      } finally {
        session.close(true);
      }
    } finally {
      await cd.removePodSandbox({ podSandboxId }).catch(() => undefined);
    }
  });
});
