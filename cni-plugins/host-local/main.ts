import { main } from '../../lib/cni/skeleton.js';
import { hostLocalPlugin } from './plugin.js';

main(hostLocalPlugin);
