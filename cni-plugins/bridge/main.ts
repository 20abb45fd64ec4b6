import { main } from '../../lib/cni/skeleton.js';
import { bridgePlugin } from './plugin.js';

main(bridgePlugin);
