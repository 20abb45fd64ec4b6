import { main } from '../../lib/cni/skeleton.js';
import { bandwidthPlugin } from './plugin.js';

main(bandwidthPlugin);
