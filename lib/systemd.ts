import { spawn } from 'node:child_process';

// What berth's daemons tell systemd: Type=notify units wait for READY. systemd-notify is a
// child process, so the units need NotifyAccess=all.

export function notifyReady(): void {
  if (!process.env.NOTIFY_SOCKET) return;
  spawn('systemd-notify', ['--ready', `--pid=${process.pid}`], { stdio: 'ignore' }).on('error', () => undefined);
}
