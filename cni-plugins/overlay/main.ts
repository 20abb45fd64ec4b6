import { main } from '../../lib/cni/skeleton.js';
import { overlayPlugin } from './plugin.js';

main(overlayPlugin);
