// `berth doctor`: a preflight and health check, like kubeadm's preflight. Gather the node's
// facts (gather.ts), judge them (checks.ts, pure), print (report.ts). Exit 0 when the node can
// run pods (warnings allowed), 1 when any check fails, 2 on a bad command line.
import { configPath, parseConfigArgs, loadNodeConfig } from '../probes.js';
import { canRunPods, evaluate } from './checks.js';
import { gatherFacts } from './gather.js';
import { findingsJson, formatFindings } from './report.js';

export const doctorUsage = `Usage: berth doctor [--config FILE] [--json]

Checks that this node can run pods with berth: kernel features (overlay, br_netfilter, vxlan,
loop), cgroups, user namespaces, sysctls, swap, the cgroup driver against kubelet's, containerd,
runc/crun, the CNI directories, ports, free space under each root, the Node runtime, and each
enabled component's readiness in berthd. Each line is ok, warn or fail, with the fix.

Free space: a root fails below 1 GiB free (images and volumes no longer fit) and warns below
10% free (kubelet's default eviction threshold, nodefs.available<10%).

Options:
  --config FILE   berth's settings (default $BERTH_CONFIG or /etc/berth/berth.yaml)
  --json          one JSON document: {"canRunPods": bool, "checks": [{status, name, finding, fix}]}
  -h, --help

Exit status: 0 when the node can run pods (warnings allowed), 1 when a check fails.
`;

export async function runDoctorCommand(args: string[]): Promise<number> {
  const parsed = parseConfigArgs('doctor', doctorUsage, args);
  if (typeof parsed === 'number') return parsed;
  const { config, json } = parsed;
  const facts = await gatherFacts(loadNodeConfig(configPath(config)));
  const findings = evaluate(facts);
  process.stdout.write(json ? findingsJson(findings) : formatFindings(findings));
  return canRunPods(findings) ? 0 : 1;
}
