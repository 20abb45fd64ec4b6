// What berth-csi remembers about its volumes, snapshots and group snapshots (persisted by
// store/journal.ts). Sizes are plain numbers of bytes: files and loop devices stay far below 2^53.

export type VolumeType = 'filesystem' | 'directory' | 'block' | 'static';
export type FsType = 'ext4' | 'xfs';

/** A mount (or loop attachment) in progress, done, or being undone: see recover.ts. */
export type Phase = 'pending' | 'done';

export interface Staging {
  path: string;
  phase: Phase;
  /** Loop device of a filesystem or block volume while staged. */
  device?: string;
  /** What the staging was made for; a publish must ask for the same kind. */
  block: boolean;
  mountFlags: string[];
  mountGroup?: string;
}

export interface Publication {
  phase: Phase;
  readonly: boolean;
  block: boolean;
  mountFlags: string[];
  /** A read-only block publication's own read-only loop device. */
  device?: string;
}

export interface VolumeRecord {
  id: string;
  /** CreateVolume's name (the idempotency key); empty for static and ephemeral volumes. */
  name: string;
  type: VolumeType;
  fsType?: FsType;
  capacityBytes: number;
  /** StorageClass parameters as given, compared when the same name is created again. */
  parameters: Record<string, string>;
  source?: { snapshotId?: string; volumeId?: string };
  /** directory volumes: the project ID whose quota holds them, or why there is none. */
  projectId?: number;
  sizeEnforced: boolean;
  /** Filesystem size last grown to; below capacityBytes means NodeStage/NodeExpand must grow it. */
  fsBytes?: number;
  /** Static volumes: the disk, partition or directory published as is. */
  staticPath?: string;
  ephemeral?: boolean;
  createdAt: string;
  staging?: Staging;
  publications: Record<string, Publication>;
}

export interface SnapshotRecord {
  id: string;
  name: string;
  sourceVolumeId: string;
  sourceType: Exclude<VolumeType, 'static'>;
  fsType?: FsType;
  sizeBytes: number;
  createdAt: string;
  groupId?: string;
  /** How the copy was made, reported in logs and tests: a reflink shares blocks. */
  copy: 'reflink' | 'copy';
}

export interface GroupSnapshotRecord {
  id: string;
  name: string;
  sourceVolumeIds: string[];
  snapshotIds: string[];
  createdAt: string;
}
