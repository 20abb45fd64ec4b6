import { createConnection, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeFrame, encodeHello, FrameDecoder, parseResult, parseVerdict, type Hello } from '../../../../lib/cni/cnid-protocol.js';
import { berthPlugin, runCni } from '../../../../world/cni.js';
import { isRoot } from '../../../../world/netns.js';
import { defaultMaxConnections } from '../../../../cni-plugins/cnid/server.js';
import { daemonBuildId, daemonPath, DaemonUnderTest, ownContext, removeDir, tempDir } from './daemon.js';

// Clients that do not follow the protocol: the daemon answers "error" (or just closes), runs
// nothing, and keeps serving everyone else.

let dir = '';
let daemon: DaemonUnderTest | undefined;

/** Send raw bytes (optionally half-closing), collect every frame until the daemon closes. */
function exchange(bytes: Buffer[], halfClose = true): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(join(dir, 'cni.sock'));
    const decoder = new FrameDecoder();
    const frames: Buffer[] = [];
    socket.on('data', (b: Buffer) => frames.push(...decoder.push(b)));
    socket.on('error', reject);
    socket.on('close', () => resolve(frames));
    socket.on('connect', () => {
      for (const b of bytes) socket.write(b);
      if (halfClose) socket.end();
    });
  });
}

function hello(over: Partial<Hello> = {}): Buffer {
  return encodeHello({ buildId: 'x', plugin: 'berth-bridge', context: ownContext(), env: { CNI_COMMAND: 'VERSION', PATH: daemonPath }, ...over });
}

async function stillServes(): Promise<void> {
  const version = await runCni(berthPlugin('berth-loopback'), { command: 'VERSION', env: { BERTH_CNI_SOCKET: join(dir, 'cni.sock') } }, '{}');
  expect(version.code).toBe(0);
  expect(version.json?.supportedVersions).toBeDefined();
}

describe.skipIf(!isRoot)('berth-cnid with malformed requests', () => {
  beforeEach(async () => {
    dir = tempDir('berth-cnid-bad-');
    daemon = await DaemonUnderTest.start(join(dir, 'cni.sock'));
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    removeDir(dir);
  });

  it('a frame length over the limit gets "error" before any of it is buffered', async () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xffffffff, 0);
    const frames = await exchange([header], false);
    expect(frames.map(parseVerdict)).toEqual([{ kind: 'error', reason: expect.stringContaining('exceeds') }]);
    await stillServes();
  });

  it('a HELLO of another protocol, or with too few fields, gets "error"', async () => {
    for (const payload of ['GET / HTTP/1.1\r\n\r\n', 'berth-cnid/1\0id\0berth-bridge', 'berth-cnid/1\0a\0b\0c\0d\0e\0notanumber\x00022']) {
      const frames = await exchange([encodeFrame(payload)]);
      expect(frames).toHaveLength(1);
      expect(parseVerdict(frames[0]!).kind).toBe('error');
    }
    await stillServes();
    expect(daemon!.served()).toBe(1);
  });

  it('a client that leaves after "ok" without sending stdin runs nothing', async () => {
    const frames = await exchange([hello({ buildId: daemonBuildId() })]);
    expect(frames.map(parseVerdict)).toEqual([{ kind: 'ok' }]);
    await stillServes();
    expect(daemon!.served()).toBe(1);
  });

  it('a client that stops in the middle of a frame is dropped', async () => {
    const frame = hello();
    expect(await exchange([frame.subarray(0, 10)])).toEqual([]);
    await stillServes();
  });

  it('a well-formed request from a client of its own gets the three result frames', async () => {
    const frames = await exchange([hello({ buildId: daemonBuildId() }), encodeFrame('{"cniVersion":"0.3.1"}')]);
    expect(parseVerdict(frames[0]!)).toEqual({ kind: 'ok' });
    const result = parseResult(frames.slice(1));
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout.toString())).toMatchObject({ cniVersion: '0.3.1' });
    expect(result.stderr.toString()).toBe('');
  });

  it(`past ${defaultMaxConnections} open connections a caller is declined at once and its plugin runs standalone; once they close, callers are served again`, async () => {
    const idle: Socket[] = [];
    try {
      for (let i = 0; i < defaultMaxConnections; i++) {
        const s = createConnection(join(dir, 'cni.sock'));
        s.on('error', () => undefined);
        await new Promise((resolve) => s.once('connect', resolve));
        idle.push(s);
      }
      // One more, sending nothing: the verdict comes unasked, and the daemon hangs up.
      const declined = await new Promise<Buffer[]>((resolve) => {
        const s = createConnection(join(dir, 'cni.sock'));
        const decoder = new FrameDecoder();
        const frames: Buffer[] = [];
        s.on('data', (b: Buffer) => frames.push(...decoder.push(b)));
        s.on('error', () => undefined);
        s.on('close', () => resolve(frames));
      });
      expect(declined.map(parseVerdict)).toEqual([{ kind: 'mismatch', reason: `berth-cnid has ${defaultMaxConnections} connections open` }]);
      // A plugin call meanwhile still gets its answer: its shim runs the plugin itself.
      await stillServes();
      expect(daemon!.log.some((l) => l.msg === 'too many connections; declining callers, who run their plugins standalone')).toBe(true);
    } finally {
      for (const s of idle) s.destroy();
    }
    let verdict: ReturnType<typeof parseVerdict> | undefined;
    for (let i = 0; i < 50; i++) {
      const frames = await exchange([hello({ buildId: daemonBuildId() }), encodeFrame('{"cniVersion":"0.3.1"}')]);
      verdict = parseVerdict(frames[0]!);
      if (verdict.kind === 'ok') break;
      await sleep(100);
    }
    expect(verdict).toEqual({ kind: 'ok' });
  });

  it('a request from another namespace, working directory, umask or PATH is declined, saying why', async () => {
    const id = daemonBuildId();
    const own = ownContext();
    const cases: [Partial<Hello>, RegExp][] = [
      [{ context: { ...own, netns: 'net:[1]' } }, /network namespace net:\[1\]/],
      [{ context: { ...own, mntns: 'mnt:[1]' } }, /mount namespace/],
      [{ context: { ...own, cwd: '/nonexistent' } }, /working directory \/nonexistent/],
      [{ context: { ...own, umask: 0o077 } }, /umask 77/],
      [{ context: { ...own, euid: 1000 } }, /euid 1000/],
      [{ env: { CNI_COMMAND: 'VERSION', PATH: '/bin' } }, /PATH "\/bin"/],
      [{ env: { CNI_COMMAND: 'VERSION', PATH: daemonPath, NODE_OPTIONS: '--require /x.js' } }, /NODE_OPTIONS/],
      [{ plugin: 'berth-nothing' }, /unknown plugin "berth-nothing"/],
    ];
    for (const [over, why] of cases) {
      const [verdict] = await exchange([hello({ buildId: id, ...over })]);
      expect(parseVerdict(verdict!)).toEqual({ kind: 'mismatch', reason: expect.stringMatching(why) });
    }
    expect(daemon!.served()).toBe(0);
  });
});
