import { existsSync, lstatSync, mkdirSync, readdirSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, errorMessage } from '../../lib/errors.js';
import { isMountPoint, mount, MountFlags, unmount } from '../../lib/mount.js';
import { nativeAddon } from '../../lib/native.js';
import type { Mount as CriMount } from '../../proto/gen/runtime/v1/api.js';
import { recursiveReadOnlyIndexes } from '../oci/mounts.js';

// Recursive read-only volumes (CRI Mount.recursive_read_only). runc 1.1 has no `rro` mount
// option, so berth makes the read-only tree itself: a clone of the host path's whole mount tree,
// every mount in it read-only (mount_setattr with AT_RECURSIVE, lib/native/mountattr.c), staged
// under <state>/rro/<container id>/<mount index>. runc then bind-mounts the staged tree
// recursively; a bind clone keeps each mount's read-only flag, so every submount stays read-only
// inside the container. The staged trees live until RemoveContainer (StartContainer may be redone
// after a crash between creating and starting the task), and recovery removes those whose
// container is gone.

const MS_PRIVATE = 0x40000;

/** Whether this kernel can make recursive read-only mounts, and if not, why. */
export interface RecursiveReadOnlySupport {
  supported: boolean;
  reason: string;
}

/** Asks the kernel once: mount_setattr(2) is the one call that can make a whole tree read-only. */
export function probeRecursiveReadOnly(): RecursiveReadOnlySupport {
  try {
    const err = nativeAddon('recursiveReadOnlySupported').recursiveReadOnlySupported();
    if (err === 0) return { supported: true, reason: '' };
    const name = err === 38 ? 'ENOSYS' : err === 1 ? 'EPERM' : `errno ${err}`;
    return { supported: false, reason: `this kernel cannot make recursive read-only mounts (mount_setattr(2): ${name}; it needs Linux 5.12 or later)` };
  } catch (err) {
    return { supported: false, reason: `recursive read-only mounts need berth's native addon: ${errorMessage(err)}` };
  }
}

export class RecursiveReadOnlyMounts {
  readonly support: RecursiveReadOnlySupport;

  /** `root`: the staging directory, <state>/rro. */
  constructor(readonly root: string, support: RecursiveReadOnlySupport = probeRecursiveReadOnly()) {
    this.support = support;
  }

  /** Where the staged trees of one container live. */
  containerDir(containerId: string): string {
    return join(this.root, containerId);
  }

  /**
   * Stage a read-only clone of each recursive read-only mount's host path; returns the staged
   * path by mount index (empty when no mount asks for it). Throws the mount's own error (naming
   * its field) when the request is malformed or the kernel cannot; on failure nothing stays
   * mounted.
   */
  stage(containerId: string, mounts: CriMount[]): Map<number, string> {
    const indexes = recursiveReadOnlyIndexes(mounts);
    const staged = new Map<number, string>();
    if (indexes.length === 0) return staged;
    if (!this.support.supported) throw new BerthError('failed-precondition', `config.mounts[${indexes[0]}].recursive_read_only: ${this.support.reason}`);
    this.ensurePrivateRoot();
    const dir = this.containerDir(containerId);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      for (const i of indexes) {
        const source = mounts[i]!.hostPath;
        let isDirectory: boolean;
        try {
          isDirectory = statSync(source).isDirectory();
        } catch (err) {
          throw new BerthError('invalid-argument', `config.mounts[${i}].host_path: "${source}": ${errorMessage(err)}`);
        }
        // A bind mount needs a target of the same kind as its source: a directory or a file.
        const target = join(dir, String(i));
        if (isDirectory) mkdirSync(target);
        else writeFileSync(target, '', { mode: 0o600 });
        try {
          nativeAddon('recursiveReadOnlyBind').recursiveReadOnlyBind(source, target);
        } catch (err) {
          throw new BerthError('invalid-argument', `config.mounts[${i}].recursive_read_only: cannot make a read-only copy of "${source}": ${errorMessage(err)}`, { cause: err });
        }
        staged.set(i, target);
      }
      return staged;
    } catch (err) {
      try {
        this.remove(containerId);
      } catch {
        // The request's own error is the one to report; recovery at the next start retries this.
      }
      throw err;
    }
  }

  /** Unmount and delete a container's staged trees; nothing staged is fine. */
  remove(containerId: string): void {
    const dir = this.containerDir(containerId);
    if (!existsSync(dir)) return;
    // MNT_DETACH takes the whole staged tree, submounts included, and never fails as busy.
    // Each target is then removed on its own, never recursively: should one still be mounted,
    // rmdir fails (EBUSY) instead of descending into the host's files.
    for (const name of readdirSync(dir)) {
      const target = join(dir, name);
      unmount(target);
      if (lstatSync(target).isDirectory()) rmdirSync(target);
      else unlinkSync(target);
    }
    rmdirSync(dir);
    this.releaseRootIfEmpty();
  }

  /** Remove the staged trees of every container not in `live` (what a crash left); returns their ids. */
  removeOrphans(live: ReadonlySet<string>): string[] {
    if (!existsSync(this.root)) return [];
    const orphans = readdirSync(this.root).filter((id) => !live.has(id));
    for (const id of orphans) this.remove(id);
    this.releaseRootIfEmpty();
    return orphans;
  }

  /**
   * With nothing staged, the root's own mount goes too: no mount of berth's stays on the host
   * while no container needs it (`berth uninstall --purge` refuses a state dir with mounts).
   * Synchronous from the check to the unmount, so no stage() can slip in between.
   */
  private releaseRootIfEmpty(): void {
    if (!existsSync(this.root) || readdirSync(this.root).length > 0) return;
    unmount(this.root);
    rmdirSync(this.root);
  }

  /**
   * The staging root is a private mount of its own, so a staged tree never propagates into
   * the peers of a shared parent (/run on a systemd host), nor anything from them into it.
   */
  private ensurePrivateRoot(): void {
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    if (isMountPoint(this.root)) return;
    mount(this.root, this.root, '', MountFlags.bind);
    mount('', this.root, '', MS_PRIVATE);
  }
}
