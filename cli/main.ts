// `berth`: the node-local command line. For now it runs the CNI demo; later issues add pods,
// containers, images, volumes and devices.

const usage = `berth — node-level Kubernetes runtime suite

Usage:
  berth demo cni [--keep]   two network namespaces on a berth-bridge network: ADD, ping, CHECK, DEL,
                            and a check that nothing leaked (--keep leaves them attached)
  berth --help

Run as root: the demo creates network namespaces, links and firewall rules.
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(usage);
    return cmd ? 0 : 2;
  }
  if (cmd === 'demo' && (sub === 'cni' || sub === undefined)) {
    const { runCniDemo } = await import('./demo-cni.js');
    return runCniDemo({ keep: rest.includes('--keep') });
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
