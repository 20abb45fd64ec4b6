// `berth`: the node-local command line: the demos, and exec into a container. Later issues add
// pods, images, volumes and devices.

const usage = `berth — node-level Kubernetes runtime suite

Usage:
  berth demo cni [--keep]   two network namespaces on a berth-bridge network: ADD, ping, CHECK, DEL,
                            and a check that nothing leaked (--keep leaves them attached)
  berth demo overlay        three nodes (network namespaces) with berth-overlayd and etcd: a pod
                            per node through berth-overlay, pod-to-pod across nodes without NAT,
                            a node leaving, and a check that nothing leaked
  berth demo cri            a web server pod through berth-cri over a private containerd and a
                            local registry, with a berth-csi volume and a berth-gpu (fake) GPU:
                            pull, provision, allocate, run, reach it on a host port, fill the
                            volume past its size, exec, inject an Xid, logs, remove
  berth demo                all three
  berth exec [-i] [-t] [--endpoint URL] CONTAINER [--] COMMAND...
                            run a command in a container through a CRI runtime's streaming
                            server, as kubectl exec does (berth exec --help)
  berth --help

Run as root: the demo creates network namespaces, links and firewall rules.
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(usage);
    return cmd ? 0 : 2;
  }
  if (cmd === 'exec') {
    const { runExecCommand } = await import('./exec.js');
    return runExecCommand(argv.slice(1));
  }
  if (cmd === 'demo' && sub === 'cni') {
    const { runCniDemo } = await import('./demo-cni.js');
    return runCniDemo({ keep: rest.includes('--keep') });
  }
  if (cmd === 'demo' && sub === 'overlay') {
    const { runOverlayDemo } = await import('./demo-overlay.js');
    return runOverlayDemo();
  }
  if (cmd === 'demo' && sub === 'cri') {
    const { runCriDemo } = await import('./demo-cri.js');
    return runCriDemo();
  }
  if (cmd === 'demo' && sub === undefined) {
    const { runCniDemo } = await import('./demo-cni.js');
    const cni = await runCniDemo({ keep: false });
    if (cni !== 0) return cni;
    const { runOverlayDemo } = await import('./demo-overlay.js');
    const overlay = await runOverlayDemo();
    if (overlay !== 0) return overlay;
    const { runCriDemo } = await import('./demo-cri.js');
    return runCriDemo();
  }
  process.stderr.write(`berth: unknown command ${JSON.stringify(argv.join(' '))}\n\n${usage}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`berth: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
