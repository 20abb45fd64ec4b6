import { credentials } from '@grpc/grpc-js';
import { remoteCommand } from '../lib/stream/client.js';
import { RuntimeServiceClient } from '../proto/gen/runtime/v1/api.js';

// `berth exec`: what `kubectl exec` does on the node, against a CRI runtime's socket directly:
// Exec for a one-time URL, then the command's streams over SPDY through berth's own client.

export const execUsage = `Usage: berth exec [options] CONTAINER [--] COMMAND [ARG...]

Runs COMMAND in a running container through the CRI runtime's streaming server.

Options:
  -i, --stdin            pass this terminal's (or pipe's) stdin to the command
  -t, --tty              allocate a terminal (this one goes raw; its size follows)
  --endpoint URL         the CRI socket (default $BERTH_CRI_ENDPOINT or unix:///run/berth/cri.sock)
  -h, --help

The exit code is the command's.
`;

interface ExecArgs {
  stdin: boolean;
  tty: boolean;
  endpoint: string;
  containerId: string;
  cmd: string[];
}

function parse(args: string[]): ExecArgs | string {
  const out: ExecArgs = { stdin: false, tty: false, endpoint: process.env.BERTH_CRI_ENDPOINT ?? 'unix:///run/berth/cri.sock', containerId: '', cmd: [] };
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-')) break;
    if (a === '-i' || a === '--stdin') out.stdin = true;
    else if (a === '-t' || a === '--tty') out.tty = true;
    else if (a === '-it' || a === '-ti') out.stdin = out.tty = true;
    else if (a === '--endpoint') {
      const v = args[++i];
      if (!v) return '--endpoint needs a value';
      out.endpoint = v;
    } else return `unknown option ${a}`;
  }
  out.containerId = args[i++] ?? '';
  if (args[i] === '--') i++;
  out.cmd = args.slice(i);
  if (!out.containerId) return 'a container ID is required';
  if (out.cmd.length === 0) return 'a command is required';
  return out;
}

export async function runExecCommand(args: string[]): Promise<number> {
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(execUsage);
    return 0;
  }
  const parsed = parse(args);
  if (typeof parsed === 'string') {
    process.stderr.write(`berth exec: ${parsed}\n\n${execUsage}`);
    return 2;
  }
  const client = new RuntimeServiceClient(parsed.endpoint, credentials.createInsecure());
  try {
    const url = await new Promise<string>((resolve, reject) =>
      client.exec({ containerId: parsed.containerId, cmd: parsed.cmd, stdin: parsed.stdin, stdout: true, stderr: !parsed.tty, tty: parsed.tty }, (err, res) =>
        err ? reject(new Error(`Exec: ${err.details || err.message}`)) : resolve(res.url),
      ),
    );
    const terminal = parsed.tty && process.stdin.isTTY && process.stdout.isTTY;
    if (terminal) process.stdin.setRawMode(true);
    try {
      const size = (): { width: number; height: number } => ({ width: process.stdout.columns || 80, height: process.stdout.rows || 24 });
      const result = await remoteCommand(url, {
        stdin: parsed.stdin ? process.stdin : undefined,
        tty: parsed.tty,
        resize: parsed.tty ? [size()] : undefined,
        watchResize: terminal ? (send) => process.stdout.on('resize', () => send(size())) : undefined,
        onStdout: (chunk) => process.stdout.write(chunk),
        onStderr: (chunk) => process.stderr.write(chunk),
      });
      if (result.exitCode !== undefined) return result.exitCode;
      process.stderr.write(`berth exec: ${result.status || 'the stream ended without a status'}\n`);
      return 1;
    } finally {
      if (terminal) process.stdin.setRawMode(false);
      process.stdin.pause();
    }
  } finally {
    client.close();
  }
}
