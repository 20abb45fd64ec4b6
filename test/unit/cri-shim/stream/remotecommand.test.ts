import { describe, expect, it } from 'vitest';
import { maxResizeLineBytes, parseResizes } from '../../../../cri-shim/stream/remotecommand.js';

// The resize channel's parser: sizes one JSON object per line, and nothing a client sends on it
// kept without bound.

describe('remotecommand resize stream', () => {
  it('reads sizes split anywhere, ignoring malformed ones', () => {
    const sizes: string[] = [];
    const feed = parseResizes((s) => sizes.push(`${s.width}x${s.height}`));
    for (const piece of ['{"Width":80,"Hei', 'ght":24}\n', 'garbage\n{"Width":0}\n', '{"Width":100,"Height":40}\n']) feed(Buffer.from(piece));
    expect(sizes).toEqual(['80x24', '100x40']);
  });

  it('drops a line that never ends instead of keeping it, and reads the sizes after it', () => {
    const sizes: string[] = [];
    const feed = parseResizes((s) => sizes.push(`${s.width}x${s.height}`));
    const junk = Buffer.alloc(64 * 1024, 'x');
    // 64 MiB without a newline: what is held stays under the line limit.
    for (let i = 0; i < 1024; i++) feed(junk);
    feed(Buffer.from('still junk\n{"Width":90,"Height":30}\n'));
    expect(sizes).toEqual(['90x30']);
    expect(maxResizeLineBytes).toBeLessThanOrEqual(4096);
  });
});
