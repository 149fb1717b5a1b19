/**
 * Each sensor's recent readings for the status page charts, in a fixed-size ring per sensor: the history window is
 * cut into slots (288 over 24 h: one per 5 minutes) and each slot keeps the latest reading taken in it. Memory is
 * `sensors × slots × 16` bytes whatever the read interval, and nothing is written to disk per sample.
 *
 * @module
 */

/**
 * One point of a sensor's history: when (ms since the epoch) and the reading.
 *
 * @example
 * ```ts
 * const p: HistoryPoint = { at: Date.now(), value: 41.5 };
 * ```
 */
export interface HistoryPoint {
  /** When the reading was taken (ms since the epoch). */
  at: number;
  /** The reading. */
  value: number;
}

/** The saved form of a {@link SensorHistory} (`history.json`). */
export interface SavedHistory {
  /** Format version. */
  v: 1;
  /** Points per sensor, oldest first. */
  sensors: Record<string, HistoryPoint[]>;
}

class Ring {
  readonly at: Float64Array;
  readonly value: Float64Array;
  constructor(slots: number) {
    this.at = new Float64Array(slots).fill(NaN);
    this.value = new Float64Array(slots);
  }
}

/**
 * Bounded per-sensor reading history.
 *
 * @example
 * ```ts
 * const h = new SensorHistory(86_400_000, 288);
 * h.record("cpu", Date.now(), 48.2);
 * h.points("cpu", Date.now()); // [{ at, value: 48.2 }]
 * ```
 */
export class SensorHistory {
  /** How far back points are kept, in ms. */
  readonly spanMs: number;
  /** Slots per sensor. */
  readonly slots: number;
  /** Width of one slot, in ms. */
  readonly slotMs: number;
  readonly #rings = new Map<string, Ring>();

  /** Makes an empty history of `spanMs` split into `slots` slots. */
  constructor(spanMs: number, slots: number) {
    this.spanMs = spanMs;
    this.slots = Math.max(2, Math.floor(slots));
    this.slotMs = Math.max(1, Math.floor(spanMs / this.slots));
  }

  /** Records a reading; a later reading in the same slot replaces it. Non-finite values are ignored. */
  record(sensor: string, at: number, value: number): void {
    if (!Number.isFinite(value) || !Number.isFinite(at)) return;
    let ring = this.#rings.get(sensor);
    if (!ring) this.#rings.set(sensor, ring = new Ring(this.slots));
    const k = Math.floor(at / this.slotMs);
    const i = k % this.slots;
    const prev = ring.at[i];
    const prevK = Math.floor(prev / this.slotMs);
    if (Number.isNaN(prev) || k > prevK || (k === prevK && at >= prev)) {
      ring.at[i] = at;
      ring.value[i] = value;
    }
  }

  /** The sensor's points within the span before `now`, oldest first. */
  points(sensor: string, now: number): HistoryPoint[] {
    const ring = this.#rings.get(sensor);
    if (!ring) return [];
    const out: HistoryPoint[] = [];
    for (let i = 0; i < this.slots; i++) {
      const at = ring.at[i];
      if (!Number.isNaN(at) && at > now - this.spanMs && at <= now) out.push({ at, value: ring.value[i] });
    }
    return out.sort((a, b) => a.at - b.at);
  }

  /** Names of the sensors with history. */
  sensors(): string[] {
    return [...this.#rings.keys()];
  }

  /** Drops the history of sensors not in `keep` (after a reload removed them). */
  retain(keep: Iterable<string>): void {
    const set = new Set(keep);
    for (const name of [...this.#rings.keys()]) if (!set.has(name)) this.#rings.delete(name);
  }

  /** The history as JSON-ready data (for saving on stop). */
  save(now: number): SavedHistory {
    const sensors: Record<string, HistoryPoint[]> = {};
    for (const name of this.#rings.keys()) sensors[name] = this.points(name, now);
    return { v: 1, sensors };
  }

  /** Loads saved points (ignoring malformed ones); only sensors in `names` are kept. */
  load(saved: unknown, names: Iterable<string>): void {
    const data = saved as Partial<SavedHistory> | null;
    if (!data || data.v !== 1 || typeof data.sensors !== "object" || data.sensors === null) return;
    const keep = new Set(names);
    for (const [name, pts] of Object.entries(data.sensors)) {
      if (!keep.has(name) || !Array.isArray(pts)) continue;
      for (const p of pts.slice(-this.slots)) {
        if (p && typeof p.at === "number" && typeof p.value === "number") this.record(name, p.at, p.value);
      }
    }
  }
}
