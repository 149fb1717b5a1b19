import assert from "node:assert/strict";
import {
  type AlertEvent,
  initialHealthState,
  initialRuleState,
  initialRuleWindow,
  type RuleSpec,
  type RuleState,
  type RuleWindow,
  type Sample,
  type SensorHealthState,
  stepHealth,
  stepRule,
} from "../src/alerts/rule_engine.ts";

const MIN = 60_000;

function spec(over: Partial<RuleSpec> = {}): RuleSpec {
  return {
    id: "freezer_above",
    sensor: "freezer",
    direction: "above",
    threshold: -10,
    clearAt: -10,
    forSamples: 1,
    ofSamples: 1,
    clearFor: 1,
    remindEveryMs: 0,
    remindBackoff: false,
    remindMaxMs: 24 * 60 * MIN,
    cooldownMs: 0,
    severity: "critical",
    recovery: true,
    ...over,
  };
}

/** Runs samples (one per minute unless given as [at, value]) and returns every event with its sample index. */
function run(
  s: RuleSpec,
  values: (number | string | [number, number | string])[],
  start: { state?: RuleState; window?: RuleWindow } = {},
): { events: (AlertEvent & { i: number })[]; state: RuleState; writes: number } {
  let state = start.state ?? initialRuleState();
  let window = start.window ?? initialRuleWindow();
  const events: (AlertEvent & { i: number })[] = [];
  let writes = 0;
  values.forEach((v, i) => {
    const [at, val] = Array.isArray(v) ? v : [i * MIN, v];
    const sample: Sample = typeof val === "string" ? { at, error: val } : { at, value: val };
    const before = JSON.stringify(state);
    const step = stepRule(s, state, window, sample);
    assert.equal(JSON.stringify(state), before, "input state is not mutated");
    if (step.persist) writes++;
    else assert.deepEqual(step.state, state, "persist=false means the persisted state did not change");
    state = step.state;
    window = step.window;
    for (const e of step.events) events.push({ ...e, i });
  });
  return { events, state, writes };
}

const kinds = (evs: { kind: string; i: number }[]) => evs.map((e) => `${e.kind}@${e.i}`);

Deno.test("above: one alert, no flood while high, one recovery", () => {
  const r = run(spec(), [-15, -12, 3.2, 4, 5, 6, -11, -12]);
  assert.deepEqual(kinds(r.events), ["alert@2", "recovery@6"]);
  const a = r.events[0];
  assert.equal(a.value, 3.2);
  assert.equal(a.threshold, -10);
  assert.equal(a.direction, "above");
  assert.equal(a.severity, "critical");
  assert.equal(a.since, 2 * MIN);
  assert.equal(a.count, 1);
  assert.equal(r.events[1].since, 2 * MIN, "recovery carries when the episode began");
  assert.equal(r.writes, 2, "persisted state changes only on alert and recovery");
});

Deno.test("threshold is strict: equal to above does not alert", () => {
  assert.deepEqual(run(spec(), [-10, -10, -10]).events, []);
});

Deno.test("below rule with hysteresis", () => {
  const s = spec({ id: "disk_low", direction: "below", threshold: 10, clearAt: 15 });
  const r = run(s, [50, 9, 12, 14, 14.9, 15, 9]);
  assert.deepEqual(kinds(r.events), ["alert@1", "recovery@5", "alert@6"]);
  assert.equal(r.events[0].direction, "below");
});

Deno.test("hysteresis: values between clear_at and the threshold keep the alert", () => {
  const r = run(spec({ clearAt: -15 }), [-5, -11, -14, -14.9, -15, -9]);
  assert.deepEqual(kinds(r.events), ["alert@0", "recovery@4", "alert@5"]);
});

Deno.test("for N samples: N breaches in a row", () => {
  const s = spec({ forSamples: 3, ofSamples: 3 });
  assert.deepEqual(kinds(run(s, [0, 0, -20, 0, 0, 0]).events), ["alert@5"]);
  assert.deepEqual(kinds(run(s, [0, 0, -20, 0, -20, 0, 0]).events), []);
});

Deno.test("N of M samples", () => {
  const s = spec({ forSamples: 3, ofSamples: 5 });
  // breaches at 0, 2, 4 → 3 of the last 5 at sample 4
  assert.deepEqual(kinds(run(s, [0, -20, 0, -20, 0]).events), ["alert@4"]);
  // breaches spaced too far apart never reach 3 of 5
  assert.deepEqual(kinds(run(s, [0, -20, -20, -20, 0, -20, -20, -20, 0, -20, -20, -20]).events), []);
});

Deno.test("clear_for: recovery needs N clear samples in a row", () => {
  const s = spec({ clearFor: 2 });
  assert.deepEqual(kinds(run(s, [0, -20, 0, -20, -20, -20]).events), ["alert@0", "recovery@4"]);
});

Deno.test("re-trigger after recovery needs a fresh debounce window", () => {
  const s = spec({ forSamples: 2, ofSamples: 3 });
  // Without the reset, sample 3 would count the breaches from before the recovery and alert at once.
  const r = run(s, [0, 0, -20, 0, -20, 0]);
  assert.deepEqual(kinds(r.events), ["alert@1", "recovery@2", "alert@5"]);
});

Deno.test("fixed reminders while the alert stands", () => {
  const s = spec({ remindEveryMs: 2 * MIN });
  const r = run(s, [0, 0, 0, 0, 0, 0, 0, -20, 0]);
  assert.deepEqual(kinds(r.events), [
    "alert@0",
    "reminder@2",
    "reminder@4",
    "reminder@6",
    "recovery@7",
    "alert@8",
  ]);
  assert.deepEqual(r.events.filter((e) => e.kind === "reminder").map((e) => e.count), [1, 2, 3]);
  assert.equal(r.events[4].count, 3, "recovery counts the reminders sent");
});

Deno.test("doubling reminders with a cap", () => {
  const s = spec({ remindEveryMs: 1 * MIN, remindBackoff: true, remindMaxMs: 4 * MIN });
  const values = Array.from({ length: 20 }, () => 0);
  const r = run(s, values);
  // alert at 0; reminders after 1, then 2, 4, 4, 4 minutes
  assert.deepEqual(kinds(r.events), [
    "alert@0",
    "reminder@1",
    "reminder@3",
    "reminder@7",
    "reminder@11",
    "reminder@15",
    "reminder@19",
  ]);
});

Deno.test("reminders are due by time, even when samples are sparse or failing", () => {
  const s = spec({ remindEveryMs: 10 * MIN });
  const r = run(s, [[0, 0], [5 * MIN, 0], [30 * MIN, "probe missing"], [31 * MIN, 0]]);
  assert.deepEqual(kinds(r.events), ["alert@0", "reminder@2"]);
  assert.equal(r.events[1].value, null);
});

Deno.test("cooldown: a flapping sensor sends one alert per cooldown, held episode mailed when still standing", () => {
  const s = spec({ cooldownMs: 10 * MIN });
  // alert at 0, clears at 1, trips at 2 (held), clears 3, trips 4 (held)... still high at 10 → announced with count
  const values = [0, -20, 0, -20, 0, 0, 0, 0, 0, 0, 0, 0];
  const r = run(s, values);
  assert.deepEqual(kinds(r.events), ["alert@0", "recovery@1", "alert@10"]);
  assert.equal(r.events[2].count, 2, "two trips since the last alert mail");
  assert.equal(r.events[2].since, 4 * MIN, "the held episode's start");
});

Deno.test("cooldown: a held episode that clears inside the cooldown is dropped silently", () => {
  const s = spec({ cooldownMs: 10 * MIN });
  const r = run(s, [0, -20, 0, -20, -20, -20, -20, -20, -20, -20, -20, -20, -20]);
  assert.deepEqual(kinds(r.events), ["alert@0", "recovery@1"]);
  assert.equal(r.state.alerting, false);
  assert.equal(r.state.trips, 1, "the silent trip is counted for the next alert");
  const next = run(s, [[20 * MIN, 5]], { state: r.state });
  assert.equal(next.events[0].count, 2);
});

Deno.test("recovery = false: one-shot rules clear silently", () => {
  const s = spec({ direction: "above", threshold: 0, clearAt: 0, recovery: false });
  assert.deepEqual(kinds(run(s, [0, 1, 0, 0, 1, 0]).events), ["alert@1", "alert@4"]);
});

Deno.test("read errors leave the rule state alone", () => {
  const r = run(spec(), [0, "gone", "gone", 0, -20]);
  assert.deepEqual(kinds(r.events), ["alert@0", "recovery@4"]);
  const q = run(spec(), ["gone", "gone", -20]);
  assert.deepEqual(q.events, []);
  assert.equal(q.writes, 0);
});

Deno.test("restart: persisted alert state does not re-alert, recovery still comes", () => {
  const first = run(spec({ forSamples: 2, ofSamples: 2 }), [0, 0, 0]);
  assert.deepEqual(kinds(first.events), ["alert@1"]);
  const persisted: RuleState = JSON.parse(JSON.stringify(first.state));
  // New process: fresh window, persisted state.
  const second = run(spec({ forSamples: 2, ofSamples: 2 }), [[10 * MIN, 0], [11 * MIN, 0], [12 * MIN, -20]], {
    state: persisted,
  });
  assert.deepEqual(kinds(second.events), ["recovery@2"]);
});

Deno.test("window of 32 samples works", () => {
  const s = spec({ forSamples: 32, ofSamples: 32 });
  const values = Array.from({ length: 32 }, () => 0);
  assert.deepEqual(kinds(run(s, values).events), ["alert@31"]);
});

function runHealth(failAfter: number, samples: (number | string)[]) {
  let state: SensorHealthState = initialHealthState();
  let failures = 0;
  const out: string[] = [];
  let writes = 0;
  samples.forEach((v, i) => {
    const step = stepHealth(
      { sensor: "probe", failAfter, severity: "warning" },
      state,
      failures,
      typeof v === "string" ? { at: i, error: v } : { at: i, value: v },
    );
    if (step.persist) writes++;
    state = step.state;
    failures = step.failures;
    for (const e of step.events) out.push(`${e.kind}@${i}${e.error ? ":" + e.error : ""}`);
  });
  return { out, writes, state };
}

Deno.test("sensor health: fail_after failures in a row raise one error, a good read one ok", () => {
  const r = runHealth(3, [1, "crc", "crc", 1, "crc", "crc", "crc", "missing", "crc", 2, 3]);
  assert.deepEqual(r.out, ["sensor_error@6:crc", "sensor_ok@9"]);
  assert.equal(r.writes, 2);
  assert.deepEqual(runHealth(1, ["x"]).out, ["sensor_error@0:x"]);
  assert.equal(
    runHealth(1, ["x", "y"]).state.lastError,
    "x",
    "the first error is kept; no write per failure",
  );
});
