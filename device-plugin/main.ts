// berth-gpu: a kubelet device plugin (deviceplugin v1beta1) for NVIDIA GPUs; berthd with only
// the gpu component, for operators who run each component as its own unit.
import { runDaemon, serveComponent } from '../lib/daemon.js';
import { errorMessage } from '../lib/errors.js';
import { gpuComponent } from './component.js';
import { parseArgs, usage } from './main-args.js';

runDaemon({
  name: 'berth-gpu',
  usage,
  parseArgs,
  async serve(args, daemon) {
    const { component, log } = await serveComponent(daemon, gpuComponent, args.config, { logLevel: args.config.logLevel });
    daemon.onReload(async () => {
      let next;
      try {
        next = args.reload();
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'SIGHUP: the new configuration is not valid; keeping the running one');
        return;
      }
      log.info('SIGHUP');
      await component.reload!(next);
    });
  },
});
