/**
 * The benchmark's figures: one value per (row, program), with the load average it ran under, plus the lines
 * that explain skips and notes.
 *
 * @module
 */

/** One measured figure. */
export interface Figure {
  value: number;
  /** 1-minute load average when it was measured (the machine is shared). */
  load: number;
  /** The individual runs when the value is a median. */
  runs?: number[];
  note?: string;
}

/**
 * Collected figures.
 *
 * @example
 * ```ts
 * const results = new Results();
 * results.set("retr_mbps", "outpost", { value: 1800, load: 1.2 });
 * results.get("retr_mbps", "outpost")?.value; // 1800
 * ```
 */
export class Results {
  readonly #figures = new Map<string, Figure>();
  /** Programs or rows that did not run, and why. */
  readonly skipped: string[] = [];
  /** Remarks printed under the table. */
  readonly notes: string[] = [];

  set(row: string, program: string, figure: Figure): void {
    this.#figures.set(`${row}/${program}`, figure);
  }

  get(row: string, program: string): Figure | undefined {
    return this.#figures.get(`${row}/${program}`);
  }
}

/**
 * The median of a non-empty list.
 *
 * @example
 * ```ts
 * median([3, 1, 2]); // 2
 * ```
 */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
