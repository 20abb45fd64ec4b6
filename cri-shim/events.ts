import { ContainerEventType, type ContainerEventResponse } from '../proto/gen/runtime/v1/api.js';

// Container lifecycle events for GetContainerEvents (kubelet's evented PLEG). Each subscriber
// gets every event from the moment it subscribes; a slow subscriber's queue is bounded, and
// one that falls too far behind is dropped (kubelet then relists, as it does on any error).

export { ContainerEventType };

type Listener = (event: ContainerEventResponse) => void;

export class EventHub {
  private readonly listeners = new Set<Listener>();

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: ContainerEventResponse): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        this.listeners.delete(l);
      }
    }
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}
