import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { BerthError } from './errors.js';

// Run a program with an argument array (never a shell string), optionally feeding stdin.
// Plain child_process, loaded on first use: execa costs ~100 ms to load, and even
// child_process's own internals cost a few ms that a plugin which never spawns should not pay.

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Do not throw on a non-zero exit; the caller inspects `code`. */
  allowFailure?: boolean;
  timeoutMs?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child: ChildProcessWithoutNullStreams = spawn(command, args, {
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new BerthError('io', `cannot run ${command}: ${e.message}`, { cause: e })));
    child.on('close', (code, signal) => {
      const result = { code: code ?? 128, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
      if (result.code !== 0 && !options.allowFailure) {
        const why = signal ? `killed by ${signal}` : `exit ${result.code}`;
        reject(new BerthError('io', `${command} ${args.join(' ')} failed (${why})`, { details: result.stderr.trim() }));
      } else {
        resolve(result);
      }
    });
    child.stdin.on('error', () => { /* the child may exit before reading stdin */ });
    child.stdin.end(options.input ?? '');
  });
}
