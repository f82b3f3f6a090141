// A counting semaphore: the emitter's bound on events accepted and not yet acknowledged.
export class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];

  constructor(readonly size: number) {
    this.free = size;
  }

  /** Resolves once a slot is free (at once when one is). */
  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(count = 1): void {
    for (let i = 0; i < count; i++) {
      const next = this.waiters.shift();
      if (next !== undefined) next();
      else this.free += 1;
    }
  }

  get waiting(): number {
    return this.waiters.length;
  }
}
