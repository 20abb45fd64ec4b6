// A berth-cnid client written from the protocol's description alone (4-byte big-endian length
// frames; HELLO fields joined by NUL), not with berth's code, so that tests can run it in another
// namespace, directory or umask and have it say whatever it likes about itself.
//
//   node raw-client.mjs '<json>'   with json:
//     socket     the daemon's socket path
//     hello      the HELLO fields, magic first
//     stdin      the plugin's stdin, sent after "ok"
//     bundle     on "mismatch", run `node <bundle>` with env and stdin, as the shim does
//     env        that run's environment
//     count      open this many connections at once, each sending the HELLO (default 1)
//     vanish     exit as soon as the HELLOs are written, before any verdict (verdicts: [])
//
// Prints one JSON line: { verdicts: ["ok" | "mismatch: reason" | "closed", ...], ran, code, stdout }.
import { spawnSync } from 'node:child_process';
import { createConnection } from 'node:net';

const req = JSON.parse(process.argv[2]);

function frame(text) {
  const body = Buffer.from(text);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** One connection: HELLO, its verdict, and on "ok" the stdin and the three RESULT frames. */
function call() {
  return new Promise((resolve) => {
    const socket = createConnection(req.socket);
    let pending = Buffer.alloc(0);
    const frames = [];
    let verdict;
    socket.on('connect', () => socket.write(frame(req.hello.join('\0'))));
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
        const n = pending.readUInt32BE(0);
        frames.push(pending.subarray(4, 4 + n));
        pending = pending.subarray(4 + n);
      }
      if (verdict === undefined && frames.length > 0) {
        verdict = frames.shift().toString().replace('\0', ': ');
        if (verdict === 'ok') socket.end(frame(req.stdin ?? ''));
        else socket.destroy();
        if (verdict !== 'ok') resolve({ verdict });
      }
      if (verdict === 'ok' && frames.length >= 3) {
        socket.destroy();
        resolve({ verdict, ran: 'daemon', code: Number(frames[0].toString()), stdout: frames[1].toString() });
      }
    });
    socket.on('error', () => resolve({ verdict: verdict ?? 'closed' }));
    socket.on('close', () => resolve({ verdict: verdict ?? 'closed' }));
  });
}

const count = req.count ?? 1;
if (req.vanish) {
  let written = 0;
  for (let i = 0; i < count; i++) {
    const socket = createConnection(req.socket);
    socket.on('error', () => undefined);
    socket.on('connect', () => socket.write(frame(req.hello.join('\0')), () => ++written === count && process.stdout.write('{"verdicts":[]}\n', () => process.exit(0))));
  }
} else {
  const answers = await Promise.all(Array.from({ length: count }, call));
  const out = { verdicts: answers.map((a) => a.verdict) };
  const first = answers[0];
  if (first.ran) Object.assign(out, { ran: first.ran, code: first.code, stdout: first.stdout });
  else if (req.bundle) {
    // Declined: what the shim does, the plugin run here, in this process's own surroundings.
    const r = spawnSync(process.execPath, [req.bundle], { env: req.env, input: req.stdin ?? '' });
    Object.assign(out, { ran: 'standalone', code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
