import { parseOverlayConfig } from '../../../../cni-plugins/overlay/config.js';

// Shared by the berth-overlay unit tests: a minimal network config parsed with some fields over
// it.

const base = { cniVersion: '1.1.0', name: 'overlay', type: 'berth-overlay' };
export const conf = (over: Record<string, unknown> = {}) => parseOverlayConfig({ ...base, ...over }, 'ADD');
