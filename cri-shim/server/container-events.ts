import type { ServerWritableStream } from '@grpc/grpc-js';
import type { ContainerEventResponse, GetEventsRequest } from '../../proto/gen/runtime/v1/api.js';
import type { CriRuntime } from '../runtime.js';

/** GetContainerEvents: a stream of lifecycle events until the client goes away. */
export function containerEvents(rt: CriRuntime) {
  return (call: ServerWritableStream<GetEventsRequest, ContainerEventResponse>) => {
    const unsubscribe = rt.events.subscribe((event) => {
      // A client that stops reading is dropped; kubelet reconnects and relists.
      if (!call.write(event) && call.writableLength > 4 * 1024 * 1024) {
        unsubscribe();
        call.destroy(new Error('event consumer too slow'));
      }
    });
    call.on('cancelled', unsubscribe);
    call.on('close', unsubscribe);
    call.on('error', unsubscribe);
  };
}
