// `berth`: the node-local command line: exec into a container. Later issues add install, doctor,
// status, images. The demos are a program of their own (demo/main.ts), so no test-world code is
// bundled here.

const usage = `berth — node-level Kubernetes runtime suite

Usage:
  berth exec [-i] [-t] [--endpoint URL] CONTAINER [--] COMMAND...
                            run a command in a container through a CRI runtime's streaming
                            server, as kubectl exec does (berth exec --help)
  berth install [--config FILE] [--components LIST] [--separate-units] [--dry-run] [--rollback]
                            install this release on the node (berth install --help)
  berth uninstall [--purge [--force]] [--dry-run]
                            remove berth from the node (berth uninstall --help)
  berth --help
`;

async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(usage);
    return cmd ? 0 : 2;
  }
  if (cmd === 'exec') {
    const { runExecCommand } = await import('./exec.js');
    return runExecCommand(argv.slice(1));
  }
  if (cmd === 'install' || cmd === 'uninstall') {
    const { runInstall, runUninstall } = await import('./install/main.js');
    return cmd === 'install' ? runInstall(argv.slice(1)) : runUninstall(argv.slice(1));
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
