import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Run a built CNI executable exactly as a runtime does: CNI_* variables plus JSON on stdin.

declare const BERTH_BUNDLED: boolean | undefined;

// One level up from world/, or two from a bundle in dist/<dir>/ (which has no import.meta.dirname).
const bundled = typeof BERTH_BUNDLED !== 'undefined' && BERTH_BUNDLED;
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), bundled ? '../..' : '..');
export const berthCniDir = join(repoRoot, 'dist/cni');
export const referenceCniDir = '/usr/lib/cni';

export interface CniCall {
  command: string;
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  path?: string;
  /** Extra or overriding variables; a value of undefined removes the variable. */
  env?: Record<string, string | undefined>;
}

export interface CniOutcome {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, if it is JSON. */
  json: Record<string, unknown> | undefined;
}

/** `argv`: arguments after the executable (e.g. a plugin bundle when `executable` is node). */
export function runCni(executable: string, call: CniCall, stdin: string | object, argv: readonly string[] = []): Promise<CniOutcome> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  if (process.env.BERTH_LOG_LEVEL) env.BERTH_LOG_LEVEL = process.env.BERTH_LOG_LEVEL;
  env.CNI_COMMAND = call.command;
  if (call.containerId !== undefined) env.CNI_CONTAINERID = call.containerId;
  if (call.netns !== undefined) env.CNI_NETNS = call.netns;
  if (call.ifname !== undefined) env.CNI_IFNAME = call.ifname;
  if (call.args !== undefined) env.CNI_ARGS = call.args;
  env.CNI_PATH = call.path ?? berthCniDir;
  for (const [k, v] of Object.entries(call.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const input = typeof stdin === 'string' ? stdin : JSON.stringify(stdin);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(executable, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolvePromise({ code: code ?? 128, stdout, stderr, json });
    });
    child.stdin.on('error', () => { /* plugin exited early */ });
    child.stdin.end(input);
  });
}

export function berthPlugin(name: string): string {
  return join(berthCniDir, name);
}
