import { closeSync, existsSync, fdatasyncSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../lib/atomic-file.js';
import { BerthError } from '../../lib/errors.js';

// berth-csi's persisted state: records keyed by kind and id, kept as a snapshot file plus an
// append-only journal of changes since that snapshot.
//
// Why a journal and not one file per record: on this class of machine a durable
// temp+fsync+rename costs ~4 ms (two flushes), an append + fdatasync ~0.5 ms. A volume cycle
// changes its record six to eight times, so the rename scheme alone would cap the driver at a
// few dozen cycles per second.
//
// Why only some changes are flushed: stage and publish records describe mounts and loop
// devices, which live in the kernel and vanish with it. A kill -9 cannot lose a write() that
// returned (it sits in the page cache), and a power loss takes the mounts away with it, so
// those records are written without a flush. Records whose loss would lose or leak data
// (a volume created, a snapshot deleted) are flushed before the RPC answers.
//
// Layout under the state directory:
//   state.json        {"generation": G, "records": {kind: {id: record}}}, replaced atomically
//   journal-G.log     one JSON line per change since state.json was written
// A torn last line (the process died mid-write) is dropped; a bad line anywhere else is an
// error, because replaying past it could resurrect deleted records.

type Line = { op: 'put'; kind: string; id: string; rec: unknown } | { op: 'del'; kind: string; id: string };

interface Snapshot {
  generation: number;
  records: Record<string, Record<string, unknown>>;
}

/** Rewrite state.json once the journal holds this many lines more than there are records. */
const compactAfterLines = 2000;

export class Journal {
  private readonly records = new Map<string, Map<string, unknown>>();
  private generation = 0;
  private fd = -1;
  private lines = 0;

  constructor(private readonly dir: string) {}

  /** Load the snapshot and replay the journal; call once before anything else. */
  open(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const snapshotPath = join(this.dir, 'state.json');
    if (existsSync(snapshotPath)) {
      const snap = JSON.parse(readFileSync(snapshotPath, 'utf8')) as Snapshot;
      this.generation = snap.generation;
      for (const [kind, byId] of Object.entries(snap.records)) this.records.set(kind, new Map(Object.entries(byId)));
    }
    const journalPath = this.journalPath(this.generation);
    if (existsSync(journalPath)) this.replay(readFileSync(journalPath, 'utf8'), journalPath);
    // Journals of other generations are leftovers of a compaction that finished.
    for (const name of readdirSync(this.dir)) {
      if (/^journal-\d+\.log$/.test(name) && name !== `journal-${this.generation}.log`) unlinkSync(join(this.dir, name));
    }
    this.fd = openSync(journalPath, 'a', 0o600);
    // A replayed torn line must not glue onto the next append: compact away from it.
    if (this.lines > 0) this.compact();
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  get<T>(kind: string, id: string): T | undefined {
    return this.records.get(kind)?.get(id) as T | undefined;
  }

  all<T>(kind: string): T[] {
    return [...(this.records.get(kind)?.values() ?? [])] as T[];
  }

  /** Store a record; `durable` flushes it to disk before returning. */
  put(kind: string, id: string, rec: unknown, durable: boolean): void {
    this.append({ op: 'put', kind, id, rec }, durable);
    let byId = this.records.get(kind);
    if (!byId) this.records.set(kind, (byId = new Map()));
    byId.set(id, structuredClone(rec));
  }

  delete(kind: string, id: string, durable: boolean): void {
    if (!this.records.get(kind)?.has(id)) return;
    this.append({ op: 'del', kind, id }, durable);
    this.records.get(kind)!.delete(id);
  }

  private append(line: Line, durable: boolean): void {
    if (this.fd < 0) throw new BerthError('internal', 'state journal is not open');
    const buf = Buffer.from(JSON.stringify(line) + '\n');
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    if (durable) fdatasyncSync(this.fd);
    if (++this.lines > compactAfterLines + this.size()) this.compact();
  }

  private size(): number {
    let n = 0;
    for (const byId of this.records.values()) n += byId.size;
    return n;
  }

  /** Write every record into a new state.json and start an empty journal for it. */
  compact(): void {
    const next = this.generation + 1;
    const records: Snapshot['records'] = {};
    for (const [kind, byId] of this.records) records[kind] = Object.fromEntries(byId);
    // Once state.json names generation `next`, the old journal is no longer read: the order
    // below never leaves a moment where a crash would replay a change twice or lose one.
    writeFileAtomic(join(this.dir, 'state.json'), JSON.stringify({ generation: next, records } satisfies Snapshot), { mode: 0o600 });
    const old = this.journalPath(this.generation);
    if (this.fd >= 0) closeSync(this.fd);
    this.generation = next;
    this.fd = openSync(this.journalPath(next), 'a', 0o600);
    this.lines = 0;
    try { unlinkSync(old); } catch { /* never written */ }
  }

  private replay(text: string, path: string): void {
    const lines = text.split('\n');
    // Everything after the last newline is a line the process did not finish writing.
    const complete = lines.slice(0, -1);
    complete.forEach((raw, i) => {
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        throw new BerthError('internal', `${path}: line ${i + 1} is not valid JSON; refusing to guess the state (move the file aside to start over)`);
      }
      let byId = this.records.get(line.kind);
      if (!byId) this.records.set(line.kind, (byId = new Map()));
      if (line.op === 'put') byId.set(line.id, line.rec);
      else byId.delete(line.id);
    });
    this.lines = complete.length + (lines.at(-1) ? 1 : 0);
  }

  private journalPath(generation: number): string {
    return join(this.dir, `journal-${generation}.log`);
  }
}

/**
 * The records as a reader outside the driver sees them (berth status), without opening the
 * journal for writing, compacting or removing anything: state.json, then its journal replayed.
 * A torn or bad line ends the replay (the driver, not a reader, decides what to do with it).
 * A compaction between the two reads is seen as a changed generation, and the read repeated.
 */
export function readJournalRecords(dir: string): Map<string, Map<string, unknown>> {
  const snapshotPath = join(dir, 'state.json');
  const readSnapshot = (): Snapshot => (existsSync(snapshotPath) ? (JSON.parse(readFileSync(snapshotPath, 'utf8')) as Snapshot) : { generation: 0, records: {} });
  for (let attempt = 0; ; attempt++) {
    const snap = readSnapshot();
    const records = new Map<string, Map<string, unknown>>();
    for (const [kind, byId] of Object.entries(snap.records)) records.set(kind, new Map(Object.entries(byId)));
    const journalPath = join(dir, `journal-${snap.generation}.log`);
    const text = existsSync(journalPath) ? readFileSync(journalPath, 'utf8') : '';
    if (attempt < 3 && readSnapshot().generation !== snap.generation) continue;
    for (const raw of text.split('\n').slice(0, -1)) {
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        break;
      }
      let byId = records.get(line.kind);
      if (!byId) records.set(line.kind, (byId = new Map()));
      if (line.op === 'put') byId.set(line.id, line.rec);
      else byId.delete(line.id);
    }
    return records;
  }
}
