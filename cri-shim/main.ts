// berth-cri: the CRI runtime (runtime.v1 RuntimeService + ImageService) over containerd and
// runc; berthd with only the cri component, for operators who run each component as its own unit.
import { runDaemon, serveComponent } from '../lib/daemon.js';
import { criComponent } from './component.js';
import { parseArgs, usage } from './main-args.js';

runDaemon({ name: 'berth-cri', usage, parseArgs, serve: (config, daemon) => serveComponent(daemon, criComponent, config, { logLevel: config.logLevel }) });
