import { BerthError } from '../../lib/errors.js';

// Reserves the CRI name of a pod or container (kubelet's <name>_<namespace>_<uid>_<attempt>)
// so two concurrent creates of one name cannot both succeed; the loser gets AlreadyExists.

export class NameIndex {
  private readonly byName = new Map<string, string>();

  reserve(name: string, id: string, what: string): void {
    const holder = this.byName.get(name);
    if (holder !== undefined && holder !== id) {
      throw new BerthError('already-exists', `${what} name "${name}" is reserved for ${holder}`);
    }
    this.byName.set(name, id);
  }

  release(name: string, id?: string): void {
    if (id === undefined || this.byName.get(name) === id) this.byName.delete(name);
  }

  holder(name: string): string | undefined {
    return this.byName.get(name);
  }

  /** Every ID holding a name: records that exist and creates still under way. */
  ids(): Set<string> {
    return new Set(this.byName.values());
  }
}
