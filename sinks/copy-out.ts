// `COPY … TO STDOUT` as a readable stream of the COPY data, in pieces of at least MIN_PIECE. The server
// sends every row as a CopyData message of its own; this reads the session's socket directly (as
// pg-copy-streams does), walks the message headers, and moves each row's bytes down over the
// headers inside the buffer the socket handed over (copyWithin allocates nothing): no object per
// row. pg-copy-streams' reader made a Buffer per row and then joined them; with the garbage
// collection this caused, that was most of the daemon's CPU in a copy.
//
// The submittable protocol is node-postgres' (Client.query calls submit, then the handle* hooks):
// while the COPY runs, the session's own parser is detached from the socket; it gets the socket
// back, with every byte after the COPY data, at CopyDone or at an ErrorResponse.

import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';

/**
 * Runs of COPY data are passed on once they hold this much. A read of a plain socket brings up to
 * 64 kB, passed on as it is; a read over TLS brings one record (16 kB at most), and such runs are
 * joined first so that each CopyData message and socket write to the target carries more. Joining
 * always (to 256 kB) cost a copy of every byte and a third more garbage collection (every buffer is
 * memory outside V8's heap, whose growth triggers its collections).
 */
export const MIN_PIECE = 32 * 1024;

const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
const ERROR_RESPONSE = 0x45; // 'E'
/** Messages the server may send in the middle of a COPY; they carry nothing for the copy. */
const INTERLEAVED = new Set([
  0x48 /* H CopyOutResponse */, 0x4e /* N Notice */, 0x53 /* S ParameterStatus */, 0x41 /* A Notification */,
]);

interface Connection {
  stream: Duplex;
  query(text: string): void;
}

type OnData = (data: Buffer) => void;

export class CopyOut extends Readable {
  rowCount = 0;
  private connection: Connection | null = null;
  private parserOnData: OnData | null = null;
  private readonly header = Buffer.alloc(5);
  private headerHave = 0;
  private code = 0;
  /** Bytes of the current message's body still to come; -1 between messages. */
  private left = -1;
  /** Compacted runs of COPY data not yet passed on, and their bytes. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private wantMore = false;
  private pumping = false;
  private detached = false;
  /** Destroyed by its consumer: the rest of the COPY is read and dropped, so the session stays usable. */
  private discard = false;
  private readonly onReadable = () => this.pump();

  constructor(private readonly text: string) {
    super();
  }

  /** node-postgres sends a returned error to handleError (a thrown one would escape its queue). */
  submit(connection: Connection): Error | undefined {
    const socket = connection.stream;
    const listeners = socket.listeners('data') as OnData[];
    if (listeners.length !== 1)
      return new Error(`COPY TO STDOUT: expected 1 data listener, found ${listeners.length}`);
    this.connection = connection;
    this.parserOnData = listeners[0]!;
    socket.removeListener('data', this.parserOnData);
    socket.pause();
    socket.on('readable', this.onReadable);
    connection.query(this.text);
    return undefined;
  }

  override _read(): void {
    this.wantMore = true;
    this.pump();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.detached && this.connection) {
      this.discard = true;
      this.wantMore = true;
      this.pump();
    }
    cb(err);
  }

  private pump(): void {
    if (this.pumping || !this.wantMore || this.detached || !this.connection) return;
    this.pumping = true;
    const socket = this.connection.stream;
    while (this.wantMore && !this.detached) {
      const chunk = socket.read() as Buffer | null;
      if (chunk === null) break;
      this.parse(chunk);
    }
    this.pumping = false;
  }

  private parse(chunk: Buffer): void {
    let i = 0;
    /** Where the next row's bytes go: rows move down over the headers between them. */
    let w = 0;
    const n = chunk.length;
    const keep = () => {
      if (w > 0 && !this.discard) this.hold(chunk.subarray(0, w));
    };
    while (i < n) {
      if (this.left < 0) {
        // A message's first byte: an error goes back to the session's parser, which reports it.
        if (this.headerHave === 0 && chunk[i] === ERROR_RESPONSE) {
          keep();
          this.detach(chunk.subarray(i));
          return;
        }
        while (this.headerHave < 5 && i < n) this.header[this.headerHave++] = chunk[i++]!;
        if (this.headerHave < 5) break;
        this.headerHave = 0;
        this.code = this.header[0]!;
        this.left = this.header.readUInt32BE(1) - 4;
        if (this.code === COPY_DONE) {
          keep();
          this.finish();
          // CommandComplete and ReadyForQuery follow: the session's parser reads them.
          this.detach(chunk.subarray(i));
          return;
        }
        if (this.code !== COPY_DATA && !INTERLEAVED.has(this.code)) {
          // Not expected in a COPY: hand the whole message to the session's parser.
          keep();
          this.finish();
          this.detach(Buffer.concat([this.header, chunk.subarray(i)]));
          return;
        }
      }
      const take = Math.min(this.left, n - i);
      if (this.code === COPY_DATA) {
        if (w !== i) chunk.copyWithin(w, i, i + take);
        w += take;
      }
      i += take;
      this.left -= take;
      if (this.left === 0) this.left = -1;
    }
    keep();
  }

  private hold(run: Buffer): void {
    this.held.push(run);
    this.heldBytes += run.length;
    if (this.heldBytes >= MIN_PIECE) this.flushHeld();
  }

  private flushHeld(): void {
    if (this.heldBytes === 0) return;
    const out = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    this.heldBytes = 0;
    if (!this.discard && !this.push(out)) this.wantMore = false;
  }

  private finish(): void {
    this.flushHeld();
    if (!this.discard) this.push(null);
  }

  private detach(rest: Buffer): void {
    this.detached = true;
    const socket = this.connection!.stream;
    const onData = this.parserOnData!;
    socket.removeListener('readable', this.onReadable);
    socket.on('data', onData);
    if (rest.length > 0) onData(rest);
    // The socket was paused to be read by hand; a data listener alone does not restart it.
    process.nextTick(() => socket.resume());
  }

  /** node-postgres: the server's ErrorResponse, or the connection's end. */
  handleError(err: Error): void {
    this.destroy(err);
  }

  /** node-postgres: "COPY n" once the server is done. */
  handleCommandComplete(msg: { text?: string }): void {
    const m = /^COPY (\d+)/.exec(msg.text ?? '');
    if (m) this.rowCount = Number(m[1]);
  }

  handleReadyForQuery(): void {}
}
