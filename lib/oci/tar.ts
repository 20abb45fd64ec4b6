// A small ustar writer for building image layers in memory: directories, regular files,
// symlinks and hard links with fixed owners, modes and mtimes, so the same input always gives
// the same bytes (and the same layer digest). Names longer than 100 bytes use the ustar prefix
// field; anything beyond 255 bytes is refused rather than silently cut.

export type TarEntry =
  | { type: 'dir'; path: string; mode?: number; uid?: number; gid?: number }
  | { type: 'file'; path: string; data: Buffer | string; mode?: number; uid?: number; gid?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'hardlink'; path: string; target: string }
  /** An overlay/OCI whiteout: deletes `path` from the layers below. */
  | { type: 'whiteout'; path: string };

const BLOCK = 512;

function writeString(header: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > length) throw new Error(`tar: "${value}" does not fit in ${length} bytes`);
  bytes.copy(header, offset);
}

function writeOctal(header: Buffer, offset: number, length: number, value: number): void {
  // NUL-terminated, zero-padded octal, as every tar reader expects.
  writeString(header, offset, length, value.toString(8).padStart(length - 1, '0') + '\0');
}

/** Split a path into ustar name (<=100) and prefix (<=155) at a slash. */
function splitName(path: string): { name: string; prefix: string } {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: '' };
  for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100) return { name, prefix };
  }
  throw new Error(`tar: path too long for ustar: ${path}`);
}

function header(path: string, typeflag: string, size: number, mode: number, uid: number, gid: number, linkname = ''): Buffer {
  const h = Buffer.alloc(BLOCK);
  const { name, prefix } = splitName(path);
  writeString(h, 0, 100, name);
  writeOctal(h, 100, 8, mode & 0o7777);
  writeOctal(h, 108, 8, uid);
  writeOctal(h, 116, 8, gid);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, 0); // mtime: fixed, for reproducible layers
  h.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  writeString(h, 156, 1, typeflag);
  writeString(h, 157, 100, linkname);
  writeString(h, 257, 6, 'ustar\0');
  writeString(h, 263, 2, '00');
  writeString(h, 265, 32, 'root');
  writeString(h, 297, 32, 'root');
  writeString(h, 345, 155, prefix);
  let sum = 0;
  for (const byte of h) sum += byte;
  writeString(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

function clean(path: string): string {
  const p = path.replace(/^\/+/, '');
  if (p === '' || p.split('/').includes('..')) throw new Error(`tar: invalid entry path "${path}"`);
  return p;
}

/** Serialize entries in the given order into one tar archive (with the two zero end blocks). */
export function buildTar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  // A hard link's header carries the inode's mode and owner: extractors apply it to the shared
  // inode, so a link header saying 0644 would make the linked binary non-executable.
  const fileModes = new Map<string, { mode: number; uid: number; gid: number }>();
  for (const entry of entries) {
    const path = clean(entry.path);
    switch (entry.type) {
      case 'dir':
        parts.push(header(path.endsWith('/') ? path : `${path}/`, '5', 0, entry.mode ?? 0o755, entry.uid ?? 0, entry.gid ?? 0));
        break;
      case 'file': {
        const data = typeof entry.data === 'string' ? Buffer.from(entry.data) : entry.data;
        parts.push(header(path, '0', data.length, entry.mode ?? 0o644, entry.uid ?? 0, entry.gid ?? 0), data);
        fileModes.set(path, { mode: entry.mode ?? 0o644, uid: entry.uid ?? 0, gid: entry.gid ?? 0 });
        const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
        if (pad) parts.push(Buffer.alloc(pad));
        break;
      }
      case 'symlink':
        parts.push(header(path, '2', 0, 0o777, 0, 0, entry.target));
        break;
      case 'hardlink': {
        const target = clean(entry.target);
        const inode = fileModes.get(target);
        if (!inode) throw new Error(`tar: hard link ${path} -> ${target}: the target must be an earlier regular file`);
        parts.push(header(path, '1', 0, inode.mode, inode.uid, inode.gid, target));
        break;
      }
      case 'whiteout': {
        const slash = path.lastIndexOf('/');
        const wh = slash === -1 ? `.wh.${path}` : `${path.slice(0, slash)}/.wh.${path.slice(slash + 1)}`;
        parts.push(header(wh, '0', 0, 0o644, 0, 0));
        break;
      }
    }
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
