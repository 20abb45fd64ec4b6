import { parseBridgeConfig } from '../../../../cni-plugins/bridge/config.js';

// Shared by the berth-bridge unit tests: a minimal network config, and that config parsed with
// some fields over it.

export const base = { cniVersion: '1.0.0', name: 'net', type: 'berth-bridge', ipam: { type: 'berth-host-local' } };
export const conf = (over: Record<string, unknown> = {}) => parseBridgeConfig({ ...base, ...over }, 'ADD');
