// What a SPDY peer may make a session hold: the sizes and counts past which a stream is refused
// (RST_STREAM) or the session ended (GOAWAY). Each bounds memory that bytes from the peer could
// otherwise make grow; spdy.ts enforces them. The defaults are far above what client-go sends
// (an exec opens at most five streams with a few dozen bytes of headers each).

export interface SpdyLimits {
  /** Largest control frame payload; larger is FRAME_TOO_LARGE and GOAWAY (SYN_STREAM is the only big one, ~100 bytes from kubectl). */
  maxControlFrameBytes: number;
  /** Largest inflated header block of one frame; larger is FRAME_TOO_LARGE and GOAWAY (zlib's context is lost mid-block). */
  maxHeaderBlockBytes: number;
  /** Most name/value pairs in one header block; more is PROTOCOL_ERROR for the stream. */
  maxHeaderCount: number;
  /** Inflated header bytes the open streams may hold together; a stream past it is REFUSED_STREAM. */
  maxSessionHeaderBytes: number;
  /** Streams open at once; one more is REFUSED_STREAM (announced in SETTINGS). */
  maxConcurrentStreams: number;
  /** Control frames (PING replies, resets, window updates) a peer may leave unread while our socket is full; past it the connection is dropped. */
  maxUnreadControlBytes: number;
  /**
   * PINGs the peer may send in one second; more is a flood: GOAWAY and the connection cut. The
   * unread limit above alone comes late: the kernel's socket buffers take megabytes of replies
   * (hundreds of thousands of PINGs, each parsed and answered) before our own buffer fills.
   */
  maxPingsPerSecond: number;
}

export const defaultSpdyLimits: Readonly<SpdyLimits> = {
  maxControlFrameBytes: 32 * 1024,
  maxHeaderBlockBytes: 64 * 1024,
  maxHeaderCount: 100,
  maxSessionHeaderBytes: 1024 * 1024,
  maxConcurrentStreams: 256,
  maxUnreadControlBytes: 64 * 1024,
  // client-go sends a PING now and then (keepalive); a thousand a second is nobody's keepalive.
  maxPingsPerSecond: 1000,
};
