import { main } from '../../lib/cni/skeleton.js';
import { tuningPlugin } from './plugin.js';

main(tuningPlugin);
