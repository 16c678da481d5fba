import type { Writable } from 'node:stream';

/** Buffers lines and writes them in large pieces, waiting for the stream to drain (big outputs stay fast). */
export class LineWriter {
  readonly #out: Writable;
  #parts: string[] = [];
  #size = 0;

  constructor(out: Writable) {
    this.#out = out;
  }

  line(s: string): void {
    this.#parts.push(s);
    this.#size += s.length + 1;
  }

  /** Writes what is buffered once it is large (always, when `force`). */
  async flush(force = false): Promise<void> {
    if (this.#parts.length === 0 || (!force && this.#size < 1 << 16)) return;
    const text = `${this.#parts.join('\n')}\n`;
    this.#parts = [];
    this.#size = 0;
    if (!this.#out.write(text)) await new Promise<void>((resolve) => this.#out.once('drain', resolve));
  }
}
