import { main } from '../../lib/cni/skeleton.js';
import { portmapPlugin } from './plugin.js';

main(portmapPlugin);
