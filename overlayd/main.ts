// berth-overlayd: leases a pod subnet per node and programs the VXLAN overlay between nodes;
// berthd with only the overlay component, for operators who run each component as its own unit.
import { runDaemon, serveComponent } from '../lib/daemon.js';
import { overlayComponent } from './component.js';
import { parseArgs, usage } from './config.js';

runDaemon({ name: 'berth-overlayd', usage, parseArgs, serve: (config, daemon) => serveComponent(daemon, overlayComponent, config, { logLevel: config.logLevel }) });
