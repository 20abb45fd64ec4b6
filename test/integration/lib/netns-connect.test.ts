import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectInNetns } from '../../../lib/netns.js';
import { isRoot, sh, TestWorld } from '../../../world/netns.js';

// connectInNetns reaches a server that listens on 127.0.0.1 inside another network namespace
// (what CRI port-forward does for a pod), and the host's namespace does not see that port.

describe.skipIf(!isRoot)('TCP connections into a network namespace', () => {
  const world = new TestWorld();
  let ns: { name: string; path: string };
  let server: ChildProcess | undefined;
  const port = 18931;

  beforeAll(async () => {
    ns = world.netns('bc-');
    sh('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
    // An echo server that answers "<what you sent>" once per connection, inside the namespace.
    const script = `import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", ${port})); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept(); d = c.recv(65536); c.sendall(b"echo:" + d); c.close()`;
    server = spawn('nsenter', [`--net=${ns.path}`, 'python3', '-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once('data', () => resolve());
      server!.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
    });
  });

  afterAll(() => {
    server?.kill('SIGKILL');
    world.cleanup();
  });

  it("connects to the namespace's localhost and exchanges data", async () => {
    const sock = connectInNetns(ns.path, port);
    const reply = await new Promise<string>((resolve, reject) => {
      let out = '';
      sock.on('data', (d: Buffer) => (out += d.toString()));
      sock.on('end', () => resolve(out));
      sock.on('error', reject);
      sock.write('ping');
    });
    expect(reply).toBe('echo:ping');
  });

  it('reports a closed port as ECONNREFUSED, and the host namespace does not see the pod port', () => {
    expect(() => connectInNetns(ns.path, port + 1)).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }));
    expect(() => connectInNetns(undefined, port)).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }));
  });
});
