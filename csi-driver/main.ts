// berth-csi: a CSI driver (Identity, Controller, GroupController, Node) for node-local volumes;
// berthd with only the csi component, for operators who run each component as its own unit.
import { runDaemon, serveComponent } from '../lib/daemon.js';
import { csiComponent } from './component.js';
import { parseArgs, usage } from './main-args.js';

runDaemon({ name: 'berth-csi', usage, parseArgs, serve: (config, daemon) => serveComponent(daemon, csiComponent, config, { logLevel: config.logLevel }) });
