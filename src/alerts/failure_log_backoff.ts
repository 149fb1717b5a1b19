/**
 * How often a sensor that keeps failing is logged: the first failure at once, then again after 10 minutes, 20,
 * 40, ... at most every 6 hours, and once when it reads again. A probe unplugged for a week then leaves a few dozen
 * lines in the journal instead of one per read.
 *
 * @module
 */

/** First repeat after this long. */
const FIRST_REPEAT_MS = 10 * 60_000;
/** The repeats never get further apart than this. */
const MAX_REPEAT_MS = 6 * 3_600_000;

/**
 * What {@link FailureLogBackoff.failed} says about one failed read: log it as the first failure, log it as "still
 * failing", or stay quiet. `failures` counts reads failed in a row so far, `since` is when the run started.
 *
 * @example
 * ```ts
 * const d: FailureLogDecision = { log: "first", failures: 1, since: Date.now() };
 * ```
 */
export interface FailureLogDecision {
  /** "first": log the failure; "again": log that it is still failing; null: do not log. */
  log: "first" | "again" | null;
  /** Reads failed in a row, this one included. */
  failures: number;
  /** When the first of them failed (ms since the epoch). */
  since: number;
}

/**
 * The log schedule of one sensor's failures (in memory, per sensor).
 *
 * @example
 * ```ts
 * const b = new FailureLogBackoff();
 * if (b.failed(Date.now()).log) console.log("log it");
 * const run = b.recovered(Date.now()); // { failures, since } or null when it was not failing
 * ```
 */
export class FailureLogBackoff {
  #failures = 0;
  #since = 0;
  #nextAt = 0;
  #gap = FIRST_REPEAT_MS;

  /** Records a failed read at `now` and says whether to log it. */
  failed(now: number): FailureLogDecision {
    this.#failures++;
    if (this.#failures === 1) {
      this.#since = now;
      this.#gap = FIRST_REPEAT_MS;
      this.#nextAt = now + this.#gap;
      return { log: "first", failures: 1, since: now };
    }
    if (now >= this.#nextAt) {
      this.#gap = Math.min(this.#gap * 2, MAX_REPEAT_MS);
      this.#nextAt = now + this.#gap;
      return { log: "again", failures: this.#failures, since: this.#since };
    }
    return { log: null, failures: this.#failures, since: this.#since };
  }

  /** Records a good read; returns the run of failures it ends (to log once), or null when there was none. */
  recovered(_now: number): { failures: number; since: number } | null {
    if (this.#failures === 0) return null;
    const run = { failures: this.#failures, since: this.#since };
    this.#failures = 0;
    return run;
  }
}
