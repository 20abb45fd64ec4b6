// The Node (V8) flags berth's long-running daemons run with: the units (systemd/node-flags, an
// EnvironmentFile giving BERTH_NODE_FLAGS, which build.mjs copies to dist/node/flags), berthd's
// launcher and the test world all take them from here; a unit test keeps the file equal to this.
//
// --max-semi-space-size=8: Node 24's V8 lets the young generation grow to 128 MiB (two 64 MiB
// semi-spaces; Node 20 stopped at 32 MiB), so a daemon under an allocation-heavy load (a stream
// flood, a burst of CNI calls) holds ~60 MiB more before it scavenges. 8 MiB semi-spaces bring
// the peak back to Node 20's at the same CPU (README "Runtime" has the numbers). Idle RSS does
// not change with it; --optimize-for-size cut a daemon's request rate by a third for ~3 MiB, and
// a --max-old-space-size cap only turns load into a crash, so neither is here.
//
// --expose-gc: lib/memory-trim.ts asks for a concurrent major GC once a minute when the heap grew
// since its last one, so a daemon that goes idle after a burst does not keep the burst's garbage
// (V8 collects only when it allocates). Nothing else calls gc().
export const daemonNodeFlags: readonly string[] = ['--max-semi-space-size=8', '--expose-gc'];
