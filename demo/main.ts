// `berth-demo`: the README's main job, run by scripts/demo.sh. It drives the test world (a booted
// systemd node, a private containerd, a local registry, etcd, network-namespace nodes), so it is a
// program of its own and the product CLI `berth` carries none of that code.

const usage = `berth-demo — the berth demos (the README's main job)

Usage:
  berth-demo cni [--keep]   two network namespaces on a berth-bridge network: ADD, ping, CHECK, DEL,
                            and a check that nothing leaked (--keep leaves them attached)
  berth-demo overlay        three nodes (network namespaces) with berth-overlayd and etcd: a pod
                            per node through berth-overlay, pod-to-pod across nodes without NAT,
                            a node leaving, and a check that nothing leaked
  berth-demo cri            a web server pod through berth-cri over a private containerd and a
                            local registry, with a berth-csi volume and a berth-gpu (fake) GPU:
                            pull, provision, allocate, run, reach it on a host port, fill the
                            volume past its size, exec, inject an Xid, logs, remove
  berth-demo node           the main one: boots a Debian 12 node (systemd as PID 1, a network of
                            its own), makes the release tarball and runs berth install in it,
                            shows berth doctor and berth status, runs a pod with a berth-csi volume
                            and a (fake) GPU through the installed units, restarts berthd under
                            it, then berth uninstall --purge and shows nothing of berth is left
  berth-demo                all four: cni, overlay, cri, then node
  berth-demo --help

Run as root: the demos create network namespaces, links, firewall rules and a container.
`;

async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(usage);
    return 0;
  }
  if (sub === 'cni') {
    const { runCniDemo } = await import('./cni.js');
    return runCniDemo({ keep: rest.includes('--keep') });
  }
  if (sub === 'overlay') {
    const { runOverlayDemo } = await import('./overlay.js');
    return runOverlayDemo();
  }
  if (sub === 'cri') {
    const { runCriDemo } = await import('./cri.js');
    return runCriDemo();
  }
  if (sub === 'node') {
    const { runNodeDemo } = await import('./node.js');
    return runNodeDemo();
  }
  if (sub === undefined) {
    const { runCniDemo } = await import('./cni.js');
    const cni = await runCniDemo({ keep: false });
    if (cni !== 0) return cni;
    const { runOverlayDemo } = await import('./overlay.js');
    const overlay = await runOverlayDemo();
    if (overlay !== 0) return overlay;
    const { runCriDemo } = await import('./cri.js');
    const cri = await runCriDemo();
    if (cri !== 0) return cri;
    const { runNodeDemo } = await import('./node.js');
    return runNodeDemo();
  }
  process.stderr.write(`berth-demo: unknown demo ${JSON.stringify(argv.join(' '))}\n\n${usage}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`berth-demo: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
