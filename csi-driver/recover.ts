import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { detachLoop, loopsBackedBy } from '../lib/loop.js';
import { isMountPoint } from '../lib/mount.js';
import type { Driver } from './driver.js';
import { removeTarget, stagingIntact, unmountTarget, unstageVolume } from './node/mounts.js';

// Start-up reconciliation after a crash, a kill -9 or a reboot. The journal says what the
// driver meant to do; the kernel (mountinfo, /sys/block/loop*) says what happened. Every
// half-done step is rolled back, so the CO's retry finds a clean slate:
//   - a staging or publication still "pending": unmount it, forget it;
//   - one "done" whose mount or device is gone (reboot): forget it;
//   - an ephemeral volume without publications: delete it;
//   - bytes under volumes/ or snapshots/ that no record owns: remove them;
//   - loop devices on our files that no staging records: detach them.

export interface RecoveryReport {
  volumes: number;
  snapshots: number;
  rolledBack: number;
  forgotten: number;
  removedBacking: number;
  detachedLoops: number;
}

export function recover(driver: Driver): RecoveryReport {
  driver.journal.open();
  const report: RecoveryReport = { volumes: 0, snapshots: 0, rolledBack: 0, forgotten: 0, removedBacking: 0, detachedLoops: 0 };

  for (const rec of driver.volumes()) {
    let changed = false;
    for (const [target, pub] of Object.entries(rec.publications)) {
      if (pub.phase === 'pending') {
        unmountTarget(target);
        if (pub.device) detachLoop(pub.device);
        removeTarget(target);
        report.rolledBack++;
      } else if (pub.block || isMountPoint(target)) continue;
      else {
        // Unmounted behind our back, or by an unpublish that died before recording it.
        removeTarget(target);
        report.forgotten++;
      }
      delete rec.publications[target];
      changed = true;
    }
    if (rec.staging && !stagingIntact(driver, rec)) {
      if (rec.staging.phase === 'pending') report.rolledBack++;
      else report.forgotten++;
      if (Object.keys(rec.publications).length === 0) {
        unstageVolume(rec, rec.staging.path, rec.staging.device, rec.staging.block);
        delete rec.staging;
        changed = true;
      }
    }
    if (rec.ephemeral && Object.keys(rec.publications).length === 0) {
      if (rec.staging) unstageVolume(rec, rec.staging.path, rec.staging.device, false);
      removeTarget(join(driver.config.root, 'ephemeral', rec.id));
      driver.forgetVolume(rec.id);
      driver.storage.removeVolume(rec);
      report.rolledBack++;
      continue;
    }
    if (rec.type === 'static' && !rec.staging && Object.keys(rec.publications).length === 0) {
      driver.forgetVolume(rec.id, false);
      continue;
    }
    if (changed) driver.saveVolume(rec, false);
  }

  // Loop devices first, then files: a file removed under an attached loop would live on.
  const devices = new Set(driver.volumes().flatMap((v) => [v.staging?.device, ...Object.values(v.publications).map((p) => p.device)]).filter(Boolean));
  for (const loop of [...loopsBackedBy(driver.storage.volumesDir), ...loopsBackedBy(driver.storage.snapshotsDir)]) {
    if (devices.has(loop.device) || loop.autoclear) continue;
    detachLoop(loop.device);
    report.detachedLoops++;
    driver.log.warn({ device: loop.device, file: loop.backingFile }, 'detached a loop device no volume records');
  }

  const volumeIds = new Set(driver.volumes().map((v) => v.id));
  const snapshotIds = new Set(driver.snapshots().map((s) => s.id));
  const { volumes, snapshots } = driver.storage.listBacking();
  for (const name of volumes) {
    if (volumeIds.has(name)) continue;
    rmSync(join(driver.storage.volumesDir, name), { recursive: true, force: true });
    rmSync(join(driver.storage.volumesDir, `${name}.img`), { force: true });
    report.removedBacking++;
    driver.log.warn({ name }, 'removed volume bytes that no record owns (a create or delete interrupted)');
  }
  for (const name of snapshots) {
    if (snapshotIds.has(name)) continue;
    rmSync(join(driver.storage.snapshotsDir, name), { recursive: true, force: true });
    rmSync(join(driver.storage.snapshotsDir, `${name}.img`), { force: true });
    report.removedBacking++;
  }
  report.volumes = driver.volumes().length;
  report.snapshots = driver.snapshots().length;
  return report;
}
