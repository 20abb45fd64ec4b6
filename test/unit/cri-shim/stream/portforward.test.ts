import { describe, expect, it } from 'vitest';
import { checkPorts, portForwardLimits, webSocketPorts } from '../../../../cri-shim/stream/portforward.js';
import { parseConfig } from '../../../../cri-shim/config.js';

// Which ports a port-forward request may name: TCP ports, at most maxPortForwardPorts, from the
// PortForward request or (WebSocket, kubelet's own clients) the URL's ?port= list.

const limits = portForwardLimits(parseConfig({ maxPortForwardPorts: 4 }));

describe('port-forward port lists', () => {
  it('takes the limits from the settings, with their defaults', () => {
    expect(portForwardLimits(parseConfig({}))).toEqual({ connectTimeoutMs: 5000, maxPorts: 32, maxStreams: 128 });
    expect(limits.maxPorts).toBe(4);
  });

  it('accepts up to maxPortForwardPorts TCP ports in a PortForward request', () => {
    expect(() => checkPorts([], limits)).not.toThrow();
    expect(() => checkPorts([1, 80, 443, 65535], limits)).not.toThrow();
  });

  it('refuses more ports than maxPortForwardPorts, naming the field and the setting', () => {
    expect(() => checkPorts([1, 2, 3, 4, 5], limits)).toThrow(/^port: 5 ports, at most 4 per request \(maxPortForwardPorts\)$/);
    expect(() => checkPorts([1, 2, 3, 4, 5], limits)).toThrow(expect.objectContaining({ kind: 'invalid-argument' }));
  });

  it('refuses a port outside 1-65535', () => {
    expect(() => checkPorts([0], limits)).toThrow(/^port: 0 is not a TCP port$/);
    expect(() => checkPorts([65536], limits)).toThrow(/^port: 65536 is not a TCP port$/);
  });

  it('uses the request ports for a WebSocket, else the ?port= list in either spelling', () => {
    expect(webSocketPorts([8080], '/portforward/t?port=1', limits)).toEqual([8080]);
    expect(webSocketPorts([], '/portforward/t?port=80&port=81', limits)).toEqual([80, 81]);
    expect(webSocketPorts([], '/portforward/t?port=80,81&port=82', limits)).toEqual([80, 81, 82]);
  });

  it('refuses a WebSocket with no ports, too many, or one that is not a port', () => {
    expect(() => webSocketPorts([], '/portforward/t', limits)).toThrow(/^port: .*needs ports/);
    expect(() => webSocketPorts([], `/portforward/t?port=${'1,'.repeat(1000)}1`, limits)).toThrow(/^port: 1001 ports, at most 4 per request \(maxPortForwardPorts\)$/);
    expect(() => webSocketPorts([1, 2, 3, 4, 5], '/portforward/t', limits)).toThrow(/maxPortForwardPorts/);
    for (const word of ['0', '65536', '', 'http', '1e3', '-1', '0x50', '080800']) {
      expect(() => webSocketPorts([], `/portforward/t?port=${word}`, limits), word).toThrow(/^port: ".*" is not a TCP port$/);
    }
  });
});
