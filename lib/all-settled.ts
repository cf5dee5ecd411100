// Promise.all that waits for every promise before it rejects: nothing is left running (and
// writing) behind a failure that the caller goes on to handle.

/** Like Promise.all, but settles only once every promise has (nothing left running on a failure). */
export async function allOrFirstError<T extends readonly unknown[]>(
  all: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const settled = await Promise.allSettled(all);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
