// The names client-go and kubelet give the streaming protocols, newest first, and what each
// version carries: one list for berth's streaming server and for its client.

/** remotecommand (exec, attach) over SPDY, in X-Stream-Protocol-Version. */
export const remoteCommandSpdyVersions = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
/** remotecommand over WebSocket, as subprotocols ('' is taken as binary v1). */
export const remoteCommandWsVersions = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'channel.k8s.io', 'base64.channel.k8s.io'];
/** port-forward over SPDY. */
export const portForwardSpdyVersions = ['portforward.k8s.io'];
/** port-forward's SPDY session tunnelled in WebSocket binary messages (KEP-4006). */
export const portForwardTunnel = 'SPDY/3.1+portforward.k8s.io';
/** port-forward over WebSocket: numbered channels, or the SPDY tunnel. */
export const portForwardWsVersions = ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io', portForwardTunnel];

/** Over SPDY, a terminal's resize stream came with v3. */
export function hasResizeStream(spdyVersion: string): boolean {
  return spdyVersion === 'v4.channel.k8s.io' || spdyVersion === 'v3.channel.k8s.io';
}

/** From v4 on, the error channel carries a Status object; before, plain text. */
export function reportsStatusObject(version: string): boolean {
  return version.startsWith('v4.') || version.startsWith('v5.');
}
