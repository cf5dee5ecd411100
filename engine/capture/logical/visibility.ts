// Whether a transaction the slot streamed is visible to a snapshot: its commit record is decoded
// once flushed, which can be a moment before the committing backend leaves the proc array, and a
// snapshot taken in that moment does not see it yet. pgoutput sends 32-bit transaction ids; the
// snapshot (txid_current_snapshot(), in every supported version) holds 64-bit ones.

/** `xmin:xmax:xip,…` → a test of a committed transaction's 32-bit id. */
export function visibleIn(snapshot: string): (xid: number) => boolean {
  const [xminText, xmaxText, xipText] = snapshot.split(':');
  const xmin = BigInt(xminText!);
  const xmax = BigInt(xmaxText!);
  const running = new Set((xipText ?? '').split(',').filter(Boolean).map(BigInt));
  return (xid: number) => {
    // The 64-bit id nearest xmax (32-bit ids compare modulo 2^32, as the server compares them):
    // a transaction that began after the snapshot is past xmax, one long committed before it.
    const full = xmax + BigInt(((xid >>> 0) - Number(xmax & 0xffffffffn)) | 0);
    if (full < xmin) return true;
    return full < xmax && !running.has(full);
  };
}
