import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFileExclusive, removeFileIfExists, writeFileAtomic } from '../../../lib/atomic-file.js';

describe('atomic files', () => {
  let dir = '';
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'berth-atomic-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writeFileAtomic replaces content and leaves no temp file', () => {
    const p = join(dir, 'state.json');
    writeFileAtomic(p, 'one');
    writeFileAtomic(p, 'two');
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('createFileExclusive lets exactly one of many creators win', () => {
    const p = join(dir, '10.0.0.2');
    const wins = Array.from({ length: 20 }, (_, i) => createFileExclusive(p, `c${i}`)).filter(Boolean);
    expect(wins).toHaveLength(1);
    expect(readFileSync(p, 'utf8')).toBe('c0');
    expect(readdirSync(dir)).toEqual(['10.0.0.2']);
  });

  it('removeFileIfExists is idempotent', () => {
    const p = join(dir, 'x');
    writeFileAtomic(p, 'x');
    expect(removeFileIfExists(p)).toBe(true);
    expect(removeFileIfExists(p)).toBe(false);
  });
});
