/**
 * The alert monitor's persisted state: one small JSON file, written atomically (temp file, fsync, rename, fsync of
 * the folder) and only when something the user was told changes, never per sample (SD cards wear out).
 *
 * A reboot therefore neither resends a standing alert nor forgets it: the recovery still goes out.
 *
 * @module
 */

import type { AlertEvent, RuleState, SensorHealthState } from "./rule_engine.ts";
import type { FileFingerprint } from "./sensor_readers.ts";
import { Logger } from "../log/logger.ts";

/**
 * Events held back while mail delivery is failing, to be sent as one digest.
 *
 * @example
 * ```ts
 * const d = emptyAlertState().digest; // { firstSent: false, events: [], dropped: 0 }
 * ```
 */
export interface DigestState {
  /** The first event of the current outage was already enqueued on its own. */
  firstSent: boolean;
  /** Events waiting for the digest (oldest first). */
  events: AlertEvent[];
  /** How many events were dropped from `events` because the list was full (the digest says so). */
  dropped: number;
  /** Recipient lists (comma-joined) the current digest was already queued for, when queueing failed halfway. */
  sentTo?: string[];
}

/**
 * Everything the monitor persists.
 *
 * @example
 * ```ts
 * const state = emptyAlertState();
 * state.rules["cpu_above"]; // undefined until the rule first sees a sample
 * ```
 */
export interface AlertState {
  /** Format version of the state file; a file with another version is ignored. */
  version: 1;
  /** Per-rule engine state, keyed by rule id. */
  rules: Record<string, RuleState>;
  /** Per-sensor read health and, for `file_changed` sensors, the last fingerprint; keyed by sensor name. */
  sensors: Record<string, { health: SensorHealthState; fingerprint: FileFingerprint | null }>;
  /** Events held back for the next digest mail. */
  digest: DigestState;
  /** Events that could not be handed to the outbox yet (e.g. its disk was full); retried on the next poll. */
  unsent: AlertEvent[];
}

/**
 * A state with nothing in it (first start).
 *
 * @example
 * ```ts
 * const s = emptyAlertState();
 * ```
 */
export function emptyAlertState(): AlertState {
  return {
    version: 1,
    rules: {},
    sensors: {},
    digest: { firstSent: false, events: [], dropped: 0 },
    unsent: [],
  };
}

const log = new Logger("alerts");

/**
 * Loads and saves the state file.
 *
 * @example
 * ```ts
 * const store = new AlertStateStore("/var/lib/outpost/alerts.json");
 * const state = await store.load();
 * await store.save(state);
 * ```
 */
export class AlertStateStore {
  /** The state file's path. */
  readonly path: string;
  /** Number of times the file was actually written (tests check it stays small). */
  writes = 0;
  #last: string | null = null;

  /** Creates a store for the JSON file at `path`; nothing is read until {@link AlertStateStore.load}. */
  constructor(path: string) {
    this.path = path;
  }

  /**
   * Reads the file; a missing or unreadable file is an empty state, a corrupt one is set aside as
   * `<path>.corrupt`. Never throws.
   */
  async load(): Promise<AlertState> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return emptyAlertState();
      // Monitoring without the old state (a standing alert may be mailed again) beats not monitoring.
      log.error("state.unreadable", { path: this.path, error: (e as Error).message });
      return emptyAlertState();
    }
    try {
      const v = JSON.parse(text) as Partial<AlertState>;
      if (v.version !== 1 || typeof v.rules !== "object" || typeof v.sensors !== "object") {
        throw new Error("unknown layout");
      }
      this.#last = text;
      const base = emptyAlertState();
      return {
        version: 1,
        rules: v.rules ?? {},
        sensors: v.sensors ?? {},
        digest: { ...base.digest, ...(v.digest ?? {}) },
        unsent: Array.isArray(v.unsent) ? v.unsent : [],
      };
    } catch (e) {
      log.warn("state.corrupt", { path: this.path, error: (e as Error).message });
      await Deno.rename(this.path, `${this.path}.corrupt`).catch(() => {});
      return emptyAlertState();
    }
  }

  /** Writes `state` atomically, unless it equals what was last written or loaded. */
  async save(state: AlertState): Promise<void> {
    const text = JSON.stringify(state);
    if (text === this.#last) return;
    const dir = this.path.includes("/") ? this.path.slice(0, this.path.lastIndexOf("/")) || "/" : ".";
    const tmp = `${this.path}.tmp-${Deno.pid}`;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      const data = new TextEncoder().encode(text);
      let off = 0;
      while (off < data.length) off += await file.write(data.subarray(off));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, this.path);
    await syncDir(dir);
    this.#last = text;
    this.writes++;
  }
}

async function syncDir(dir: string): Promise<void> {
  let d: Deno.FsFile | null = null;
  try {
    d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    d?.close();
  }
}
