import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from '../../../../csi-driver/store/journal.js';

describe('berth-csi state journal', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-journal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function reopen(): Journal {
    const j = new Journal(dir);
    j.open();
    return j;
  }

  it('records put and deleted survive a reopen', () => {
    const j = reopen();
    j.put('volume', 'a', { id: 'a', size: 1 }, true);
    j.put('volume', 'b', { id: 'b', size: 2 }, false);
    j.put('volume', 'a', { id: 'a', size: 3 }, false);
    j.delete('volume', 'b', true);
    j.put('snapshot', 's', { id: 's' }, true);
    j.close();
    const again = reopen();
    expect(again.all('volume')).toEqual([{ id: 'a', size: 3 }]);
    expect(again.get('snapshot', 's')).toEqual({ id: 's' });
    expect(again.get('volume', 'b')).toBeUndefined();
  });

  it('a record handed to put can change afterwards without changing what is stored', () => {
    const j = reopen();
    const rec = { id: 'a', publications: {} as Record<string, number> };
    j.put('volume', 'a', rec, false);
    rec.publications.x = 1;
    expect(j.get<typeof rec>('volume', 'a')!.publications).toEqual({});
  });

  it('a torn last line (the process died mid-append) is dropped, the rest replayed', () => {
    const j = reopen();
    j.put('volume', 'a', { id: 'a' }, true);
    j.close();
    const journal = readdirSync(dir).find((n) => n.startsWith('journal-'))!;
    appendFileSync(join(dir, journal), '{"op":"put","kind":"volume","id":"b","rec":{"id"');
    const again = reopen();
    expect(again.all('volume')).toEqual([{ id: 'a' }]);
    // Reopening compacted the torn line away: a later append is not glued to it.
    again.put('volume', 'c', { id: 'c' }, true);
    again.close();
    expect(reopen().all<{ id: string }>('volume').map((v) => v.id).sort()).toEqual(['a', 'c']);
  });

  it('a corrupt line in the middle is an error, not a guess', () => {
    const j = reopen();
    j.put('volume', 'a', { id: 'a' }, true);
    j.close();
    const journal = readdirSync(dir).find((n) => n.startsWith('journal-'))!;
    appendFileSync(join(dir, journal), 'garbage\n{"op":"del","kind":"volume","id":"a"}\n');
    expect(() => reopen()).toThrow(/line \d+ is not valid JSON/);
  });

  it('compaction writes state.json and starts a new journal; nothing is lost', () => {
    const j = reopen();
    for (let i = 0; i < 3000; i++) j.put('volume', `v${i % 10}`, { id: `v${i % 10}`, n: i }, false);
    j.close();
    const snapshot = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { generation: number };
    expect(snapshot.generation).toBeGreaterThan(0);
    expect(readdirSync(dir).filter((n) => n.startsWith('journal-'))).toHaveLength(1);
    const again = reopen();
    expect(again.all('volume')).toHaveLength(10);
    expect(again.get('volume', 'v9')).toEqual({ id: 'v9', n: 2999 });
  });

  it('a journal of an older generation left by an interrupted compaction is ignored and removed', () => {
    const j = reopen();
    j.put('volume', 'a', { id: 'a' }, true);
    j.compact();
    j.close();
    writeFileSync(join(dir, 'journal-0.log'), '{"op":"del","kind":"volume","id":"a"}\n');
    expect(reopen().get('volume', 'a')).toEqual({ id: 'a' });
    expect(readdirSync(dir)).not.toContain('journal-0.log');
  });
});
