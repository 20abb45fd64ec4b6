import { pino, stdTimeFunctions, destination, type Logger, type LevelWithSilent } from 'pino';

// Structured JSON logs via pino, for daemons: stdout, synchronous, so journald keeps order.
// CNI executables do not use this (pino costs ~35 ms of start-up); they use lib/cni/log.ts,
// which writes the same JSON shape to stderr.

export interface LogOptions {
  name: string;
  level?: LevelWithSilent;
  fd?: 1 | 2;
}

export const logLevels: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function levelFromEnv(fallback: LevelWithSilent): LevelWithSilent {
  const level = process.env.BERTH_LOG_LEVEL as LevelWithSilent | undefined;
  return level && logLevels.includes(level) ? level : fallback;
}

export function createLogger(options: LogOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? levelFromEnv('info'),
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination({ fd: options.fd ?? 1, sync: true }),
  );
}
