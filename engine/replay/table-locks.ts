// Two-way sync runs two Replayers, one per direction; a table's batches of the two never run at
// once: a batch resolves conflicts against the keys still pending on the side it writes, which a
// batch of the other direction would otherwise read and consume meanwhile.
export class TableLocks {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(table: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(table) ?? Promise.resolve();
    let release = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = before.then(() => mine);
    this.tails.set(table, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(table) === tail) this.tails.delete(table);
    }
  }
}
