/**
 * The alert rule engine: a pure state machine per rule and per sensor, with no I/O and no clock of its own.
 *
 * Input is a sample (a value or a read error, stamped with a time); output is the rule's next state plus the events
 * to mail. State is split in two: {@link RuleState} (what the user has been told; persisted, changes rarely) and
 * {@link RuleWindow} (debounce counters; in memory only, changes every sample). `persist` in each step says
 * whether the persisted part changed, so the caller writes its state file only then (SD cards wear).
 *
 * Rule semantics:
 * - breach: `value > threshold` (above) or `value < threshold` (below);
 * - debounce: the alert starts once `forSamples` of the last `ofSamples` samples breached (`ofSamples ==
 *   forSamples` means N in a row);
 * - hysteresis: it clears only after `clearFor` samples in a row are back past `clearAt` (`<= clearAt` for above,
 *   `>= clearAt` for below);
 * - reminders every `remindEveryMs` while it stands, doubling each time with `remindBackoff` (capped at
 *   `remindMaxMs`);
 * - cooldown: at most one alert mail per `cooldownMs`; an episode that starts inside the cooldown is held and
 *   mailed when the cooldown ends if it still stands (its `count` says how many times the rule tripped), or
 *   dropped silently if it cleared meanwhile (the user's last news, "recovered", is still true);
 * - a recovery event ends every announced episode (unless `recovery` is off, for one-shot rules).
 *
 * @module
 */

/**
 * How urgent an alert is; `critical` mail is kept first when the outbox must drop mail.
 *
 * @example
 * ```ts
 * const severity: Severity = "critical";
 * console.log(severity.toUpperCase()); // "CRITICAL"
 * ```
 */
export type Severity = "info" | "warning" | "critical";

/**
 * The engine's view of one `[[rules]]` entry (thresholds and timing, all resolved).
 *
 * @example
 * ```ts
 * const spec: RuleSpec = { id: "freezer_warm", sensor: "freezer", direction: "above", threshold: -10,
 *   clearAt: -12, forSamples: 2, ofSamples: 3, clearFor: 1, remindEveryMs: 3_600_000, remindBackoff: true,
 *   remindMaxMs: 86_400_000, cooldownMs: 600_000, severity: "critical", recovery: true };
 * console.log(spec.id);
 * ```
 */
export interface RuleSpec {
  /** Unique rule id (used in state and tags). */
  id: string;
  /** Name of the sensor whose samples the rule reads. */
  sensor: string;
  /** Whether a reading breaches by being above or below `threshold`. */
  direction: "above" | "below";
  /** The breach threshold, in the sensor's unit (`value > threshold` for above, `<` for below). */
  threshold: number;
  /** Value the reading must get back past to clear (hysteresis); equals `threshold` when not set. */
  clearAt: number;
  /** Breaching samples needed within the last `ofSamples` to raise the alert (the "N" of "N of M"). */
  forSamples: number;
  /** Window length for "N of M"; at most 32. */
  ofSamples: number;
  /** Samples in a row back past `clearAt` needed to clear. */
  clearFor: number;
  /** Time between reminder mails while the alert stands, in ms; 0 disables reminders. */
  remindEveryMs: number;
  /** Double the reminder interval after each reminder, up to `remindMaxMs`. */
  remindBackoff: boolean;
  /** Longest reminder interval with backoff, in ms. */
  remindMaxMs: number;
  /** Least time between two alert mails of this rule, in ms; episodes inside it are held, not mailed. */
  cooldownMs: number;
  /** Severity of the rule's mails. */
  severity: Severity;
  /** Send a recovery event when an announced episode clears. */
  recovery: boolean;
}

/**
 * The persisted part of a rule's state: what the user has been told.
 *
 * @example
 * ```ts
 * const s = initialRuleState();
 * s.alerting; // false
 * ```
 */
export interface RuleState {
  /** The condition holds (after debounce). */
  alerting: boolean;
  /** An alert event went out for the current episode. */
  announced: boolean;
  /** When the current episode started (ms since the epoch). */
  since: number | null;
  /** Value that started the episode. */
  triggerValue: number | null;
  /** Reminders sent for the current episode. */
  reminders: number;
  /** When the next reminder is due (ms since the epoch); null when none is scheduled. */
  nextReminderAt: number | null;
  /** When the last alert event went out (cooldown reference). */
  lastAlertAt: number | null;
  /** Episodes (including held ones) since the last alert event. */
  trips: number;
}

/**
 * The in-memory debounce counters of a rule (not persisted: a restart starts a fresh window).
 *
 * @example
 * ```ts
 * const w = initialRuleWindow();
 * console.log(w); // { recent: 0, clearRun: 0 }
 * ```
 */
export interface RuleWindow {
  /** Bit i set = the sample i steps ago breached. */
  recent: number;
  /** Samples in a row back past `clearAt` while alerting. */
  clearRun: number;
}

/**
 * One reading: a value, or the reason it could not be read. `at` is in ms since the epoch.
 *
 * @example
 * ```ts
 * const good: Sample = { at: Date.now(), value: 41.5 };
 * const bad: Sample = { at: Date.now(), error: "No such file: /sys/class/thermal/thermal_zone0/temp." };
 * console.log(good.error === undefined, bad.error !== undefined); // true true
 * ```
 */
export type Sample = { at: number; value: number; error?: undefined } | { at: number; error: string };

/**
 * What the monitor mails.
 *
 * @example
 * ```ts
 * declare const spec: RuleSpec; // the freezer_warm rule above
 * const state = initialRuleState();
 * const ruleWindow = initialRuleWindow();
 * const { events } = stepRule(spec, state, ruleWindow, { at: Date.now(), value: -4 });
 * for (const e of events) console.log(e.kind, e.rule, e.value); // "alert" "freezer_warm" -4
 * ```
 */
export interface AlertEvent {
  /** What happened: a rule alert, reminder or recovery, or a sensor failing or reading again. */
  kind: "alert" | "reminder" | "recovery" | "sensor_error" | "sensor_ok";
  /** Rule id; null for sensor health events. */
  rule: string | null;
  /** Name of the sensor concerned. */
  sensor: string;
  /** When the event happened (ms since the epoch). */
  at: number;
  /** The reading that caused the event; null for sensor errors. */
  value: number | null;
  /** The rule's direction; null for sensor health events. */
  direction: "above" | "below" | null;
  /** The rule's threshold; null for sensor health events. */
  threshold: number | null;
  /** When the episode (or sensor failure) started. */
  since: number;
  /** alert: times the rule tripped since the last alert mail; reminder: its number; errors: failures in a row. */
  count: number;
  /** Severity of the rule or sensor. */
  severity: Severity;
  /** The read error, for sensor_error events; null otherwise. */
  error: string | null;
}

/**
 * Result of one {@link stepRule} call.
 *
 * @example
 * ```ts
 * declare const spec: RuleSpec;
 * declare const sample: Sample;
 * declare const store: { save(): Promise<void> };
 * let state = initialRuleState();
 * let ruleWindow = initialRuleWindow();
 * const step = stepRule(spec, state, ruleWindow, sample);
 * state = step.state;
 * ruleWindow = step.window;
 * if (step.persist) await store.save();
 * console.log(state.alerting, ruleWindow.recent);
 * ```
 */
export interface RuleStep {
  /** The rule's next persisted state. */
  state: RuleState;
  /** The rule's next debounce counters. */
  window: RuleWindow;
  /** Events to mail, in order (usually none). */
  events: AlertEvent[];
  /** The persisted state changed and must be written. */
  persist: boolean;
}

/**
 * A rule that has never fired.
 *
 * @example
 * ```ts
 * const s = initialRuleState();
 * console.log(s.alerting); // false
 * ```
 */
export function initialRuleState(): RuleState {
  return {
    alerting: false,
    announced: false,
    since: null,
    triggerValue: null,
    reminders: 0,
    nextReminderAt: null,
    lastAlertAt: null,
    trips: 0,
  };
}

/**
 * Empty debounce counters (also what a restart starts with).
 *
 * @example
 * ```ts
 * const w = initialRuleWindow();
 * console.log(w.recent); // 0
 * ```
 */
export function initialRuleWindow(): RuleWindow {
  return { recent: 0, clearRun: 0 };
}

function popcount(n: number): number {
  let c = 0;
  while (n) {
    n &= n - 1;
    c++;
  }
  return c;
}

function event(
  spec: RuleSpec,
  kind: AlertEvent["kind"],
  at: number,
  value: number | null,
  since: number,
  count: number,
): AlertEvent {
  return {
    kind,
    rule: spec.id,
    sensor: spec.sensor,
    at,
    value,
    direction: spec.direction,
    threshold: spec.threshold,
    since,
    count,
    severity: spec.severity,
    error: null,
  };
}

/** Interval before reminder number `n + 1` (n reminders already sent). */
function reminderInterval(spec: RuleSpec, n: number): number {
  if (!spec.remindBackoff) return spec.remindEveryMs;
  return Math.min(spec.remindEveryMs * 2 ** Math.min(n, 30), spec.remindMaxMs);
}

/**
 * Feeds one sample to a rule and returns its next state and the events to mail. Pure: the inputs are not changed.
 *
 * @example
 * ```ts
 * const spec: RuleSpec = { id: "freezer_warm", sensor: "freezer", direction: "above", threshold: -10,
 *   clearAt: -12, forSamples: 1, ofSamples: 1, clearFor: 1, remindEveryMs: 0, remindBackoff: false,
 *   remindMaxMs: 86_400_000, cooldownMs: 0, severity: "critical", recovery: true };
 * const step = stepRule(spec, initialRuleState(), initialRuleWindow(), { at: Date.now(), value: 3.2 });
 * step.events[0].kind; // "alert"
 * ```
 */
export function stepRule(spec: RuleSpec, state: RuleState, window: RuleWindow, sample: Sample): RuleStep {
  const s: RuleState = { ...state };
  const w: RuleWindow = { ...window };
  const events: AlertEvent[] = [];
  const at = sample.at;
  let persist = false;

  if (sample.error === undefined) {
    const v = sample.value;
    const breach = spec.direction === "above" ? v > spec.threshold : v < spec.threshold;
    const cleared = spec.direction === "above" ? v <= spec.clearAt : v >= spec.clearAt;
    const mask = spec.ofSamples >= 32 ? 0xffffffff : (1 << spec.ofSamples) - 1;
    w.recent = ((w.recent << 1) | (breach ? 1 : 0)) & mask;
    if (!s.alerting) {
      if (popcount(w.recent >>> 0) >= spec.forSamples) {
        s.alerting = true;
        s.since = at;
        s.triggerValue = v;
        s.reminders = 0;
        s.nextReminderAt = null;
        s.trips += 1;
        w.clearRun = 0;
        persist = true;
        if (s.lastAlertAt === null || at - s.lastAlertAt >= spec.cooldownMs) {
          announce(spec, s, at, v, events);
        }
      }
    } else {
      w.clearRun = cleared ? w.clearRun + 1 : 0;
      if (w.clearRun >= spec.clearFor) {
        if (s.announced && spec.recovery) {
          events.push(event(spec, "recovery", at, v, s.since ?? at, s.reminders));
        }
        s.alerting = false;
        s.announced = false;
        s.since = null;
        s.triggerValue = null;
        s.reminders = 0;
        s.nextReminderAt = null;
        w.recent = 0;
        w.clearRun = 0;
        persist = true;
        return { state: s, window: w, events, persist };
      }
    }
  }

  const value = sample.error === undefined ? sample.value : null;
  if (s.alerting && !s.announced && s.lastAlertAt !== null && at - s.lastAlertAt >= spec.cooldownMs) {
    // A held episode outlived the cooldown: tell the user now.
    announce(spec, s, at, value ?? s.triggerValue, events);
    persist = true;
  } else if (
    s.alerting && s.announced && s.nextReminderAt !== null && at >= s.nextReminderAt && events.length === 0
  ) {
    s.reminders += 1;
    events.push(event(spec, "reminder", at, value, s.since ?? at, s.reminders));
    s.nextReminderAt = at + reminderInterval(spec, s.reminders);
    persist = true;
  }
  return { state: s, window: w, events, persist };
}

function announce(spec: RuleSpec, s: RuleState, at: number, v: number | null, events: AlertEvent[]): void {
  events.push(event(spec, "alert", at, v, s.since ?? at, s.trips));
  s.announced = true;
  s.lastAlertAt = at;
  s.trips = 0;
  s.nextReminderAt = spec.remindEveryMs > 0 ? at + reminderInterval(spec, 0) : null;
}

/**
 * How a sensor's read failures become events.
 *
 * @example
 * ```ts
 * const spec: SensorHealthSpec = { sensor: "freezer", failAfter: 3, severity: "warning" };
 * console.log(spec.failAfter);
 * ```
 */
export interface SensorHealthSpec {
  /** Name of the sensor. */
  sensor: string;
  /** Failures in a row before a sensor-error event. */
  failAfter: number;
  /** Severity of the sensor_error and sensor_ok events. */
  severity: Severity;
}

/**
 * The persisted part of a sensor's health.
 *
 * @example
 * ```ts
 * const h = initialHealthState();
 * console.log(h); // { failing: false, since: null, lastError: null }
 * ```
 */
export interface SensorHealthState {
  /** A sensor_error event went out and no good reading has come since. */
  failing: boolean;
  /** When the failures started (ms since the epoch); null while healthy. */
  since: number | null;
  /** The latest read error; null while healthy. */
  lastError: string | null;
}

/**
 * Result of one health step; `failures` is the in-memory count of failures in a row.
 *
 * @example
 * ```ts
 * declare const spec: SensorHealthSpec;
 * declare const sample: Sample;
 * let health = initialHealthState();
 * let failures = 0;
 * const step = stepHealth(spec, health, failures, sample);
 * health = step.state;
 * failures = step.failures;
 * console.log(health.failing, failures);
 * ```
 */
export interface HealthStep {
  /** The sensor's next persisted health. */
  state: SensorHealthState;
  /** Failures in a row so far (0 after a good reading). */
  failures: number;
  /** Events to mail (a sensor_error or sensor_ok, or none). */
  events: AlertEvent[];
  /** The persisted state changed and must be written. */
  persist: boolean;
}

/**
 * A healthy sensor.
 *
 * @example
 * ```ts
 * const h = initialHealthState();
 * console.log(h.failing); // false
 * ```
 */
export function initialHealthState(): SensorHealthState {
  return { failing: false, since: null, lastError: null };
}

/**
 * Feeds one sample to a sensor's health machine: `failAfter` errors in a row raise one `sensor_error`, the next
 * good reading raises one `sensor_ok`. Pure.
 *
 * @example
 * ```ts
 * const spec = { sensor: "probe", failAfter: 1, severity: "warning" as const };
 * stepHealth(spec, initialHealthState(), 0, { at: 0, error: "missing" }).events[0].kind; // "sensor_error"
 * ```
 */
export function stepHealth(
  spec: SensorHealthSpec,
  state: SensorHealthState,
  failures: number,
  sample: Sample,
): HealthStep {
  const base = { rule: null, sensor: spec.sensor, at: sample.at, direction: null, threshold: null } as const;
  if (sample.error !== undefined) {
    const n = failures + 1;
    if (!state.failing && n >= spec.failAfter) {
      const next: SensorHealthState = { failing: true, since: sample.at, lastError: sample.error };
      return {
        state: next,
        failures: n,
        persist: true,
        events: [{
          ...base,
          kind: "sensor_error",
          value: null,
          since: sample.at,
          count: n,
          severity: spec.severity,
          error: sample.error,
        }],
      };
    }
    return { state, failures: n, events: [], persist: false };
  }
  if (state.failing) {
    return {
      state: initialHealthState(),
      failures: 0,
      persist: true,
      events: [{
        ...base,
        kind: "sensor_ok",
        value: sample.value,
        since: state.since ?? sample.at,
        count: failures,
        severity: spec.severity,
        error: null,
      }],
    };
  }
  return { state, failures: 0, events: [], persist: false };
}
