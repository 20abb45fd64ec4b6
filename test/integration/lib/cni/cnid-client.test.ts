import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniDaemon } from '../../../../cni-plugins/cnid/server.js';
import { callCnid } from '../../../../lib/cni/cnid-client.js';
import { encodeVerdict } from '../../../../lib/cni/cnid-protocol.js';
import type { CniPlugin } from '../../../../lib/cni/skeleton.js';
import { BerthError } from '../../../../lib/errors.js';
import { isRoot } from '../../../../world/netns.js';

// berth-cnid's protocol spoken from Node (lib/cni/cnid-client.ts) against the real daemon code
// with a fake plugin: a call it serves, one it declines (which the runtime then executes), and a
// daemon lost after it accepted (an error: the plugin may have run, so it is never run twice).

const fakePlugin: CniPlugin<unknown> = {
  name: 'berth-fake',
  about: 'a fake plugin for the client test',
  parseConfig: (raw) => raw,
  add: async (ctx) => ({ cniVersion: ctx.cniVersion, ips: [{ address: '10.9.0.2/24' }] }),
  del: async () => undefined,
  check: async () => undefined,
  gc: async () => undefined,
  status: async () => undefined,
};

let dir = '';
let daemon: CniDaemon | undefined;
let raw: Server | undefined;
const env = () => ({ PATH: process.env.PATH ?? '', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/nowhere' });
const stdin = JSON.stringify({ cniVersion: '1.0.0', name: 'net', type: 'berth-fake' });

describe.skipIf(!isRoot)('the cnid client', () => {
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-cnid-client-'));
    // The daemon compares the caller's log level with its own: both unset here.
    delete process.env.BERTH_LOG_LEVEL;
    daemon = new CniDaemon({ plugins: [fakePlugin], buildId: 'b1', log: pino({ level: 'silent' }) });
    await daemon.listenOnPath(join(dir, 'cni.sock'));
  });
  afterEach(async () => {
    await daemon?.stop();
    raw?.close();
    raw = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('is served by a daemon of the same build: the output the executable would print', async () => {
    const answer = await callCnid({ socketPath: join(dir, 'cni.sock'), buildId: 'b1', plugin: 'berth-fake', env: env(), stdin });
    expect(answer.kind).toBe('served');
    if (answer.kind !== 'served') return;
    expect(answer.result.exitCode).toBe(0);
    expect(JSON.parse(answer.result.stdout.toString())).toMatchObject({ ips: [{ address: '10.9.0.2/24' }] });
    expect(daemon!.served.socket).toBe(1);
  });

  it('is declined by a daemon of another build, or where no daemon listens; nothing ran', async () => {
    const other = await callCnid({ socketPath: join(dir, 'cni.sock'), buildId: 'b2', plugin: 'berth-fake', env: env(), stdin });
    expect(other).toEqual({ kind: 'declined', reason: expect.stringMatching(/mismatch: caller build b2 differs/) });
    const none = await callCnid({ socketPath: join(dir, 'none.sock'), buildId: 'b1', plugin: 'berth-fake', env: env(), stdin });
    expect(none).toEqual({ kind: 'declined', reason: expect.stringMatching(/ENOENT/) });
    expect(daemon!.served.socket).toBe(0);
  });

  it('a daemon lost after it accepted the request is an error, not a decline', async () => {
    raw = createServer((socket) => socket.once('data', () => socket.end(encodeVerdict({ kind: 'ok' }))));
    await new Promise<void>((resolve) => raw!.listen(join(dir, 'raw.sock'), resolve));
    const err = await callCnid({ socketPath: join(dir, 'raw.sock'), buildId: 'b1', plugin: 'berth-fake', env: env(), stdin }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(err).toMatchObject({ kind: 'try-again', message: expect.stringMatching(/berth-cnid stopped before answering/) });
  });

  it('in-process requests are served without a socket, and declined for an unknown plugin', async () => {
    const out = await daemon!.serveLocal('berth-fake', env(), stdin);
    expect(typeof out).not.toBe('string');
    expect(await daemon!.serveLocal('berth-other', env(), stdin)).toBe('unknown plugin "berth-other"');
    expect(daemon!.served['in-process']).toBe(1);
  });
});
