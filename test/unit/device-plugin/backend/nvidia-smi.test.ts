import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '../../../../lib/errors.js';
import { NvidiaSmiBackend, parseEccCounts, parseQueryGpu, parseTopoMatrix, parseXidLine, pciAddress } from '../../../../device-plugin/backend/nvidia-smi.js';
import type { HealthEvent } from '../../../../device-plugin/backend/types.js';

// The nvidia-smi backend's parsers on recorded outputs, and the backend itself against a
// stand-in nvidia-smi script (there is no GPU here or in CI).

/** `nvidia-smi topo -m` on an 8-GPU board: two NV12 islands joined by NV6, four NICs. */
const topoDgx = [
  '\tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\tNIC0\tNIC1\tNIC2\tNIC3\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID',
  'GPU0\t X \tNV12\tNV12\tNV12\tNV6\tNV6\tNV6\tNV6\tPXB\tPXB\tSYS\tSYS\t48-63,176-191\t3\t\tN/A',
  'GPU1\tNV12\t X \tNV12\tNV12\tNV6\tNV6\tNV6\tNV6\tPXB\tPXB\tSYS\tSYS\t48-63,176-191\t3\t\tN/A',
  'GPU2\tNV12\tNV12\t X \tNV12\tNV6\tNV6\tNV6\tNV6\tSYS\tSYS\tSYS\tSYS\t16-31,144-159\t1\t\tN/A',
  'GPU3\tNV12\tNV12\tNV12\t X \tNV6\tNV6\tNV6\tNV6\tSYS\tSYS\tSYS\tSYS\t16-31,144-159\t1\t\tN/A',
  'GPU4\tNV6\tNV6\tNV6\tNV6\t X \tNV12\tNV12\tNV12\tSYS\tSYS\tPXB\tPXB\t112-127,240-255\t7\t\tN/A',
  'GPU5\tNV6\tNV6\tNV6\tNV6\tNV12\t X \tNV12\tNV12\tSYS\tSYS\tPXB\tPXB\t112-127,240-255\t7\t\tN/A',
  'GPU6\tNV6\tNV6\tNV6\tNV6\tNV12\tNV12\t X \tNV12\tSYS\tSYS\tSYS\tSYS\t80-95,208-223\t5\t\tN/A',
  'GPU7\tNV6\tNV6\tNV6\tNV6\tNV12\tNV12\tNV12\t X \tSYS\tSYS\tSYS\tSYS\t80-95,208-223\t5\t\tN/A',
  'NIC0\tPXB\tPXB\tSYS\tSYS\tSYS\tSYS\tSYS\tSYS\t X \tPIX\tSYS\tSYS\t\t\t\t',
  'NIC1\tPXB\tPXB\tSYS\tSYS\tSYS\tSYS\tSYS\tSYS\tPIX\t X \tSYS\tSYS\t\t\t\t',
  'NIC2\tSYS\tSYS\tSYS\tSYS\tPXB\tPXB\tSYS\tSYS\tSYS\tSYS\t X \tPIX\t\t\t\t',
  'NIC3\tSYS\tSYS\tSYS\tSYS\tPXB\tPXB\tSYS\tSYS\tSYS\tSYS\tPIX\t X \t\t\t\t',
  '',
  'Legend:',
  '',
  '  X    = Self',
  '  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)',
  '  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node',
  '  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)',
  '  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)',
  '  PIX  = Connection traversing at most a single PCIe bridge',
  '  NV#  = Connection traversing a bonded set of # NVLinks',
  '',
  'NIC Legend:',
  '',
  '  NIC0: mlx5_0',
  '  NIC1: mlx5_1',
  '  NIC2: mlx5_2',
  '  NIC3: mlx5_3',
  '',
].join('\n');

/** Two PCIe GPUs under one host bridge, and a NIC on the other socket; bold header as newer drivers print it. */
const topoPcieSameSocket = [
  '\t\x1b[4mGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m',
  'GPU0\t X \tPHB\tSYS\t0-11\t0\t\tN/A',
  'GPU1\tPHB\t X \tSYS\t0-11\t0\t\tN/A',
  'NIC0\tSYS\tSYS\t X \t\t\t\t',
  '',
  'Legend:',
  '',
  '  X    = Self',
  '  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)',
  '  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)',
  '  NV#  = Connection traversing a bonded set of # NVLinks',
  '',
  'NIC Legend:',
  '',
  '  NIC0: mlx5_0',
].join('\n');

/** Two PCIe GPUs on different sockets, an older driver without the NIC and GPU NUMA ID columns. */
const topoPcieTwoSockets = [
  '\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity',
  'GPU0\t X \tSYS\t0-15,32-47\t0',
  'GPU1\tSYS\t X \t16-31,48-63\t1',
  '',
  'Legend:',
  '',
  '  X    = Self',
  '  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)',
  '  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node',
  '  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)',
  '  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)',
  '  PIX  = Connection traversing at most a single PCIe bridge',
  '  NV#  = Connection traversing a bonded set of # NVLinks',
  '',
].join('\n');

const uuids = [
  'GPU-9c5b0f4e-2f1c-8a9d-3c44-0e9b7f1a2b3c',
  'GPU-1f2e3d4c-5b6a-7988-a1b2-c3d4e5f60718',
  'GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9',
  'GPU-d2e9a7c1-33f0-4b8e-9a51-7c6d5e4f3a21',
];

/** `nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id --format=csv,noheader,nounits`. */
const queryGpuCsv = [
  `0, ${uuids[0]}, NVIDIA A100-SXM4-80GB, 81920, 00000000:07:00.0`,
  `1, ${uuids[1]}, NVIDIA GeForce RTX 3090, 24576, 00000000:0F:00.0`,
  `2, ${uuids[2]}, Tesla V100-SXM2-16GB, 16160, 00000000:3B:00.0`,
  `3, ${uuids[3]}, NVIDIA RTX A6000, 49140, 00000001:86:00.0`,
  '',
].join('\n');

/** `nvidia-smi --query-gpu=uuid,ecc.errors.uncorrected.volatile.total --format=csv,noheader,nounits`. */
const eccCsv = [`${uuids[0]}, 0`, `${uuids[1]}, [N/A]`, `${uuids[2]}, 3`, `${uuids[3]}, 0`, ''].join('\n');

describe('parseQueryGpu', () => {
  it('reads index, uuid, name with spaces, memory in MiB and the PCI bus id of every GPU', () => {
    expect(parseQueryGpu(queryGpuCsv)).toEqual([
      { index: 0, uuid: uuids[0], name: 'NVIDIA A100-SXM4-80GB', memoryMiB: 81920, pciBusId: '00000000:07:00.0' },
      { index: 1, uuid: uuids[1], name: 'NVIDIA GeForce RTX 3090', memoryMiB: 24576, pciBusId: '00000000:0F:00.0' },
      { index: 2, uuid: uuids[2], name: 'Tesla V100-SXM2-16GB', memoryMiB: 16160, pciBusId: '00000000:3B:00.0' },
      { index: 3, uuid: uuids[3], name: 'NVIDIA RTX A6000', memoryMiB: 49140, pciBusId: '00000001:86:00.0' },
    ]);
  });

  it('keeps a name that itself contains a comma', () => {
    expect(parseQueryGpu(`0, ${uuids[0]}, Board, Rev 2, 1024, 00000000:01:00.0\n`)[0]?.name).toBe('Board, Rev 2');
  });

  it('gives no GPUs for empty output, with or without a trailing newline', () => {
    expect(parseQueryGpu('')).toEqual([]);
    expect(parseQueryGpu('\n')).toEqual([]);
  });

  it('rejects a line whose memory is not a number, naming the field', () => {
    expect(() => parseQueryGpu(`0, ${uuids[0]}, A100, [N/A], 00000000:07:00.0`)).toThrow(/memory\.total "\[N\/A\]"/);
    expect(() => parseQueryGpu('No devices were found')).toThrow(BerthError);
  });
});

describe('pciAddress', () => {
  it("turns nvidia-smi's 8-hex domain into sysfs's 4-hex lowercase form", () => {
    expect(pciAddress('00000000:3B:00.0')).toBe('0000:3b:00.0');
    expect(pciAddress('00000001:86:00.0')).toBe('0001:86:00.0');
    expect(pciAddress('0000:3b:00')).toBe('0000:3b:00');
    expect(pciAddress('3B:00.0')).toBeUndefined();
  });
});

describe('parseTopoMatrix', () => {
  it('reads NVLink lane counts of an 8-GPU board and ignores NIC columns, NIC rows, affinity and legend', () => {
    const m = parseTopoMatrix(topoDgx);
    expect(m.gpus).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(m.link).toHaveLength(8);
    for (const row of m.link) expect(row).toHaveLength(8);
    expect(m.nvlinks[0]).toEqual([0, 12, 12, 12, 6, 6, 6, 6]);
    expect(m.nvlinks[7]).toEqual([6, 6, 6, 6, 12, 12, 12, 0]);
    expect(m.link[0]?.[1]).toBe('nvlink');
    expect(m.link[3]?.[5]).toBe('nvlink');
  });

  it('leaves a GPU with itself unknown (X)', () => {
    const m = parseTopoMatrix(topoDgx);
    for (let i = 0; i < 8; i++) expect(m.link[i]?.[i]).toBe('unknown');
  });

  it('reads PHB between two PCIe GPUs behind one host bridge, through a bold header', () => {
    const m = parseTopoMatrix(topoPcieSameSocket);
    expect(m.gpus).toEqual([0, 1]);
    expect(m.link).toEqual([['unknown', 'phb'], ['phb', 'unknown']]);
    expect(m.nvlinks).toEqual([[0, 0], [0, 0]]);
  });

  it('reads SYS between GPUs on two sockets', () => {
    expect(parseTopoMatrix(topoPcieTwoSockets).link).toEqual([['unknown', 'sys'], ['sys', 'unknown']]);
  });

  it('maps every legend cell kind', () => {
    const text = ['\tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6', 'GPU0\t X \tPIX\tPXB\tPHB\tNODE\tSYS\tSOC', ...['GPU1', 'GPU2', 'GPU3', 'GPU4', 'GPU5', 'GPU6'].map((g) => `${g}\tSYS\tSYS\tSYS\tSYS\tSYS\tSYS\tSYS`)].join('\n');
    expect(parseTopoMatrix(text).link[0]).toEqual(['unknown', 'pix', 'pxb', 'phb', 'node', 'sys', 'sys']);
  });

  it('rejects output without a GPU header, or with a short row', () => {
    expect(() => parseTopoMatrix('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.')).toThrow(/no header row/);
    expect(() => parseTopoMatrix('\tGPU0\tGPU1\nGPU0\t X \nGPU1\tSYS\t X ')).toThrow(/row GPU0 has 1 GPU cells, expected 2/);
  });
});

describe('parseXidLine', () => {
  it('reads the PCI-prefixed form of current drivers', () => {
    expect(parseXidLine("NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.")).toEqual({ pciBusId: '0000:3b:00', code: 79 });
  });

  it('reads the older form without PCI:', () => {
    expect(parseXidLine('NVRM: Xid (0000:3b:00): 13, Graphics Exception: ESR 0x504648=0x1000e 0x504650=0x0')).toEqual({ pciBusId: '0000:3b:00', code: 13 });
  });

  it('reads lines with a dmesg timestamp or a /dev/kmsg record prefix, and uppercase hex', () => {
    expect(parseXidLine('[ 8123.456789] NVRM: Xid (PCI:0000:AF:00): 48, pid=2213, name=python3, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.')).toEqual({ pciBusId: '0000:af:00', code: 48 });
    expect(parseXidLine("4,1534,8123456789,-;NVRM: Xid (PCI:0000:07:00): 94, pid=991, name=train, Contained ECC error.")).toEqual({ pciBusId: '0000:07:00', code: 94 });
  });

  it('ignores other NVRM lines and other kernel messages', () => {
    expect(parseXidLine('NVRM: GPU at PCI:0000:3b:00: GPU-9c5b0f4e-2f1c-8a9d-3c44-0e9b7f1a2b3c')).toBeUndefined();
    expect(parseXidLine('NVRM: GPU Board Serial Number: 1324021012345')).toBeUndefined();
    expect(parseXidLine('EXT4-fs (sda1): mounted filesystem with ordered data mode.')).toBeUndefined();
  });
});

describe('parseEccCounts', () => {
  it('reads the uncorrected count per GPU; [N/A] (no ECC) is undefined', () => {
    expect(parseEccCounts(eccCsv)).toEqual(new Map([[uuids[0], 0], [uuids[1], undefined], [uuids[2], 3], [uuids[3], 0]]));
  });
});

describe('NvidiaSmiBackend', () => {
  const dirs: string[] = [];
  const backends: NvidiaSmiBackend[] = [];
  afterEach(async () => {
    for (const b of backends.splice(0)) await b.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'berth-gpu-smi-'));
    dirs.push(d);
    return d;
  };

  /** A stand-in nvidia-smi and dmesg in a directory that is the whole PATH. */
  function standIn(): { bin: string; root: string; backend: NvidiaSmiBackend } {
    const root = tempDir();
    const bin = join(root, 'bin');
    mkdirSync(bin);
    writeFileSync(join(root, 'query.csv'), queryGpuCsv);
    writeFileSync(join(root, 'topo.txt'), topoPcieTwoSockets);
    writeFileSync(join(root, 'ecc.csv'), eccCsv);
    writeFileSync(join(root, 'xid.txt'), "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n");
    const script = [
      '#!/bin/sh',
      'case "$*" in',
      `  "topo -m") /bin/cat ${root}/topo.txt ;;`,
      `  *ecc.errors*) /bin/cat ${root}/ecc.csv ;;`,
      `  *--id=${uuids[2]}*) echo ${uuids[2]} ;;`,
      '  *--id=*) echo "No devices were found" >&2; exit 6 ;;',
      `  *) /bin/cat ${root}/query.csv ;;`,
      'esac',
    ].join('\n');
    writeFileSync(join(bin, 'nvidia-smi'), script);
    writeFileSync(join(bin, 'dmesg'), `#!/bin/sh\n/bin/cat ${root}/xid.txt\nexec /bin/sleep 60\n`);
    chmodSync(join(bin, 'nvidia-smi'), 0o755);
    chmodSync(join(bin, 'dmesg'), 0o755);
    const numa = join(root, 'sys/bus/pci/devices/0000:3b:00.0');
    mkdirSync(numa, { recursive: true });
    writeFileSync(join(numa, 'numa_node'), '1\n');
    const backend = new NvidiaSmiBackend({ env: { PATH: bin }, sysRoot: join(root, 'sys'), devRoot: join(root, 'dev'), dmesgBinary: join(bin, 'dmesg'), eccPollMs: 50 });
    backends.push(backend);
    return { bin, root, backend };
  }

  it('discover() is not-available when nvidia-smi is not on PATH', async () => {
    const backend = new NvidiaSmiBackend({ env: { PATH: tempDir() } });
    backends.push(backend);
    const err = await backend.discover().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).kind).toBe('not-available');
    expect((err as BerthError).message).toMatch(/^nvidia-smi: /);
  });

  it('discover() is not-available when nvidia-smi fails (no driver)', async () => {
    const bin = tempDir();
    writeFileSync(join(bin, 'nvidia-smi'), '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n');
    chmodSync(join(bin, 'nvidia-smi'), 0o755);
    const backend = new NvidiaSmiBackend({ env: { PATH: bin } });
    backends.push(backend);
    await expect(backend.discover()).rejects.toMatchObject({ kind: 'not-available', message: expect.stringMatching(/could not communicate with the NVIDIA driver/) });
  });

  it('discover() reads GPUs, NUMA nodes from sysfs (-1 when absent) and /dev/nvidiaN paths', async () => {
    const { root, backend } = standIn();
    const gpus = await backend.discover();
    expect(gpus.map((g) => [g.index, g.uuid, g.numaNode, g.devicePath])).toEqual([
      [0, uuids[0], -1, join(root, 'dev/nvidia0')],
      [1, uuids[1], -1, join(root, 'dev/nvidia1')],
      [2, uuids[2], 1, join(root, 'dev/nvidia2')],
      [3, uuids[3], -1, join(root, 'dev/nvidia3')],
    ]);
  });

  it('topology() maps topo -m cells to GPUs by index', async () => {
    const { backend } = standIn();
    const topo = await backend.topology();
    expect(topo.link(uuids[0]!, uuids[1]!)).toBe('sys');
    expect(topo.link(uuids[1]!, uuids[0]!)).toBe('sys');
    expect(topo.link(uuids[0]!, uuids[3]!)).toBe('unknown'); // GPU3 is not in this matrix
    expect(topo.nvlinks(uuids[0]!, uuids[1]!)).toBe(0);
  });

  it('controlDevices() lists only the control nodes that exist', async () => {
    const { root, backend } = standIn();
    mkdirSync(join(root, 'dev'));
    writeFileSync(join(root, 'dev/nvidiactl'), '');
    writeFileSync(join(root, 'dev/nvidia-uvm'), '');
    expect(await backend.controlDevices()).toEqual([join(root, 'dev/nvidiactl'), join(root, 'dev/nvidia-uvm')]);
  });

  it('probe() is true only when nvidia-smi --id=<uuid> answers with that uuid', async () => {
    const { backend } = standIn();
    expect(await backend.probe(uuids[2]!)).toBe(true);
    expect(await backend.probe(uuids[0]!)).toBe(false);
  });

  it('watchHealth() reports an Xid from the kernel log by UUID, and a rise of the ECC count', async () => {
    const { root, backend } = standIn();
    await backend.discover();
    const events: HealthEvent[] = [];
    const stop = backend.watchHealth((e) => events.push(e));
    try {
      await expect.poll(() => events.find((e) => e.kind === 'xid'), { timeout: 3000 }).toMatchObject({ uuid: uuids[2], code: 79 });
      await new Promise((r) => setTimeout(r, 150)); // the baseline ECC poll
      writeFileSync(join(root, 'ecc.csv'), eccCsv.replace(`${uuids[2]}, 3`, `${uuids[2]}, 5`));
      await expect.poll(() => events.find((e) => e.kind === 'ecc-double-bit'), { timeout: 3000 }).toMatchObject({ uuid: uuids[2], code: 5 });
      expect(events.filter((e) => e.kind === 'ecc-double-bit')).toHaveLength(1);
    } finally {
      stop();
    }
  });
});
