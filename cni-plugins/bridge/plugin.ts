import type { CniPlugin } from '../../lib/cni/skeleton.js';
import { bridgeAdd } from './add.js';
import { bridgeCheck, bridgeStatus } from './check.js';
import { parseBridgeConfig, type BridgeConfig } from './config.js';
import { bridgeDel, bridgeGc } from './del.js';

export const bridgePlugin: CniPlugin<BridgeConfig> = {
  name: 'berth-bridge',
  about: 'connects containers to a Linux bridge through veth pairs, with IPAM, gateway and masquerading',
  parseConfig: parseBridgeConfig,
  add: bridgeAdd,
  del: bridgeDel,
  check: bridgeCheck,
  gc: bridgeGc,
  status: bridgeStatus,
};
