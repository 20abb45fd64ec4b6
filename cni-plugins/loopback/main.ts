// berth-loopback: brings the loopback interface of a pod's network namespace up (ADD) and down (DEL).
import { main } from '../../lib/cni/skeleton.js';
import { loopbackPlugin } from './plugin.js';

main(loopbackPlugin);
