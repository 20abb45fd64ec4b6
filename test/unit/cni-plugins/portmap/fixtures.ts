import { parsePortmapConfig } from '../../../../cni-plugins/portmap/config.js';

// Shared by the berth-portmap unit tests: a minimal network config with these port mappings
// (and other fields), parsed.

const base = { cniVersion: '1.1.0', name: 'pmnet', type: 'berth-portmap' };
export const conf = (mappings: unknown[], extra: Record<string, unknown> = {}) =>
  parsePortmapConfig({ ...base, runtimeConfig: { portMappings: mappings }, ...extra }, 'ADD');
