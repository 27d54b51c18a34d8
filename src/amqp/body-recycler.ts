/**
 * Hands the body of a finished message back to the pool (util/body-pool.ts), once nothing can
 * read it again. That takes two things:
 *
 * - Nothing else holds the message. `Message.reusable` says the body came from the pool and the
 *   message went to exactly one queue and was not stored; whatever copies or shares it later
 *   (dead-lettering, a delivery-count copy) clears the flag. The queue entry was delivered once
 *   only, so a single delivery wrote it out, and it is now acknowledged (or was sent no-ack).
 * - The socket is done with it: large bodies go to the socket by reference (out-buffer.ts), so
 *   the write that carried the delivery must have completed. Each connection numbers its
 *   flushes; a delivery notes the number of the flush that carries it, and its body waits here
 *   until that flush's write callback has come. A client acking a tag it has not yet received
 *   cannot make the broker reuse a body still being sent.
 *
 * The message's own body becomes empty at once, so a reference overlooked here would show
 * an empty body rather than someone else's bytes.
 */
import type { Message } from '../core/message.js';
import type { QueueEntry } from '../core/queue-entry.js';
import { giveBody } from '../util/body-pool.js';
import { Deque } from '../util/deque.js';

const EMPTY = Buffer.alloc(0);

export class BodyRecycler {
  /** flushes started; a delivery written now goes out with flush number `started + 1` */
  started = 0;
  /** flushes whose write has completed (callbacks come in order) */
  private done = 0;
  /** bodies waiting for their flush, with the flush numbers alongside */
  private readonly bodies = new Deque<Buffer>();
  private readonly flushes = new Deque<number>();

  /** The flush that will carry what is written to the output buffer now. */
  get next(): number {
    return this.started + 1;
  }

  /**
   * A settled entry (acked, or sent no-ack) whose delivery went out with flush `flush`: its
   * body goes back to the pool if nothing else can use it.
   */
  settled(entry: QueueEntry, flush: number): void {
    const msg = entry.msg;
    if (!msg.reusable || entry.deliveries !== 1) return;
    msg.reusable = false;
    this.recycle(msg, flush);
  }

  private recycle(msg: Message, flush: number): void {
    const body = msg.body;
    msg.body = EMPTY;
    if (flush <= this.done) {
      giveBody(body);
      return;
    }
    this.bodies.push(body);
    this.flushes.push(flush);
  }

  /** The write callback of a flush's last chunk. */
  readonly onWritten = (err?: Error | null): void => {
    if (!err) this.written();
  };

  /** The write of the oldest outstanding flush completed. */
  private written(): void {
    const done = ++this.done;
    const flushes = this.flushes;
    while (flushes.length > 0 && flushes.peek()! <= done) {
      flushes.shift();
      giveBody(this.bodies.shift()!);
    }
  }

  /** The socket is gone: what waits is left to the garbage collector. */
  drop(): void {
    this.bodies.clear();
    this.flushes.clear();
  }
}
