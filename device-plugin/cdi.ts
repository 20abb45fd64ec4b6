import { basename, join } from 'node:path';
import { writeFileAtomic, removeFileIfExists } from '../lib/atomic-file.js';
import { BerthError } from '../lib/errors.js';
import type { Gpu } from './backend/types.js';

// The CDI spec (Container Device Interface, spec 0.6.0) for the `cdi` strategy: each GPU is a
// device named by its UUID and by its index (as nvidia-ctk names them); the control devices
// every GPU container needs are spec-level edits, applied whenever any device of the spec is.
// Only device nodes: driver libraries are not injected through this spec.

export const cdiVersion = '0.6.0';
export const defaultCdiSpecFile = 'berth-gpu.json';

export interface CdiDeviceNode {
  path: string;
  hostPath: string;
  permissions: string;
}

export interface CdiContainerEdits {
  deviceNodes: CdiDeviceNode[];
}

export interface CdiSpec {
  cdiVersion: string;
  kind: string;
  devices: { name: string; containerEdits: CdiContainerEdits }[];
  containerEdits: CdiContainerEdits;
}

// CDI: kind is vendor/class; a device name is alphanumerics plus - _ . :
const kindPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const deviceNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

export function cdiSpec(gpus: Gpu[], controlDevices: string[], kind: string): CdiSpec {
  if (!kindPattern.test(kind)) throw new BerthError('invalid-argument', `cdiKind: ${JSON.stringify(kind)} is not a CDI kind like vendor.com/class`);
  const badNames = gpus.map((g) => g.uuid).filter((uuid) => !deviceNamePattern.test(uuid));
  if (badNames.length > 0) throw new BerthError('invalid-argument', `gpus: UUIDs not usable as CDI device names: ${badNames.join(', ')}`);

  const sorted = [...gpus].sort((a, b) => a.index - b.index);
  const edits = (gpu: Gpu): CdiContainerEdits => ({
    deviceNodes: [{ path: `/dev/nvidia${gpu.index}`, hostPath: gpu.devicePath, permissions: 'rw' }],
  });
  return {
    cdiVersion,
    kind,
    devices: [
      ...sorted.map((gpu) => ({ name: gpu.uuid, containerEdits: edits(gpu) })),
      ...sorted.map((gpu) => ({ name: String(gpu.index), containerEdits: edits(gpu) })),
    ],
    containerEdits: {
      deviceNodes: controlDevices.map((hostPath) => ({ path: `/dev/${basename(hostPath)}`, hostPath, permissions: 'rw' })),
    },
  };
}

function checkFileName(fileName: string): void {
  // The CDI cache reads only *.json and *.yaml files directly in its directories.
  if (fileName.includes('/') || !/^[^.].*\.(json|yaml)$/.test(fileName)) {
    throw new BerthError('invalid-argument', `fileName: ${JSON.stringify(fileName)} must be a plain *.json or *.yaml file name`);
  }
}

/** Write the spec to `<dir>/<fileName>` atomically (mode 0644); returns the path. */
export function writeCdiSpec(dir: string, spec: CdiSpec | object, fileName = defaultCdiSpecFile): string {
  checkFileName(fileName);
  const path = join(dir, fileName);
  writeFileAtomic(path, `${JSON.stringify(spec, null, 2)}\n`, { mode: 0o644 });
  return path;
}

/** Remove the spec; returns whether it existed. */
export function removeCdiSpec(dir: string, fileName = defaultCdiSpecFile): boolean {
  checkFileName(fileName);
  return removeFileIfExists(join(dir, fileName));
}
