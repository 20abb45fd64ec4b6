import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A peer that writes `batch` (pings) over and over and never reads what comes back, until the
 * server destroys its end or `rounds` batches went out. Resolves with the largest write backlog
 * the server's socket held meanwhile.
 */
export async function floodUnread(peer: Socket, server: Socket, batch: Buffer, rounds: number): Promise<number> {
  peer.pause();
  let peak = 0;
  for (let round = 0; round < rounds && !server.destroyed; round++) {
    peer.write(batch);
    peak = Math.max(peak, server.writableLength);
    await sleep(1);
  }
  return peak;
}
