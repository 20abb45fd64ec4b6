// Work an RPC leaves for after its reply: deleting what the reply no longer waits for, preparing
// what the next call will want. It runs on a short timer rather than on the next turn of the
// event loop (setImmediate), because the reply is not out by then: grpc-js hands it to nghttp2,
// which writes HEADERS and DATA from a native immediate and the trailers a turn later, and the
// authority rewriter (lib/grpc/h2-authority.ts) copies those bytes to the client in the poll
// phases after that. JS queued with setImmediate runs in between and holds the reply back: on
// bench/cri, a CreateContainer reply reached the client 1-2.5 ms after its handler ended with
// its follow-up work queued so, and ~0.5 ms with that work on this timer.

/** How long after the handler's end its follow-up work starts. */
export const afterReplyMs = 20;

export function afterReply(work: () => void): void {
  setTimeout(work, afterReplyMs);
}
