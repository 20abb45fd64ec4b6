import { main } from '../lib/cni/skeleton.js';
import { hostLocalPlugin } from './host-local.js';

main(hostLocalPlugin);
