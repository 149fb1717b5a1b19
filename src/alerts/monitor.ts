/**
 * `AlertMonitor`: polls each sensor on its interval, feeds the rule engine, and turns events into mail through an
 * {@link AlertMailer} (the daemon adapts the durable Outbox + DeliveryWorker to it).
 *
 * Guarantees:
 * - a bad sensor never crashes the monitor: read failures are events of their own;
 * - state is persisted only on state change, and an event is recorded as `unsent` in the state file before it is
 *   handed to the mailer, so a crash between the two loses nothing;
 * - while the mailer reports delivery failing, the first event still goes out at once; later ones are collected
 *   and sent as ONE digest (events, first and last seen, current state) when delivery recovers;
 * - a new mail about a rule or sensor replaces mail about it that is still waiting in the queue (and says so), so
 *   after an outage the newest mail describes the current state, never a stale recovery or alert;
 * - a digest for several recipient lists remembers which lists it reached, so a failure halfway never sends it
 *   twice to anyone.
 *
 * @module
 */

import type { AlertsConfig, RuleConfig, SensorConfig } from "./alerts_config.ts";
import { type AlertState, AlertStateStore } from "./alert_state.ts";
import {
  type AlertEvent,
  initialHealthState,
  initialRuleState,
  initialRuleWindow,
  type RuleWindow,
  type Sample,
  stepHealth,
  stepRule,
} from "./rule_engine.ts";
import { SensorReadError } from "./sensor_readers.ts";
import { SensorSource } from "./sensor_source.ts";
import {
  eventLine,
  formatDuration,
  formatNumber,
  type MailContext,
  renderDigestMail,
  renderEventMail,
  replacedNote,
} from "./templates.ts";
import { FailureLogBackoff } from "./failure_log_backoff.ts";
import { Logger } from "../log/logger.ts";

/**
 * Where alert mail goes. The daemon implements it with the outbox: `enqueue` stores durably and returns the id;
 * `deliveryFailing` is true while the delivery worker cannot reach the server.
 *
 * @example
 * ```ts
 * import type { Outbox } from "../smtp/outbox.ts";
 * import type { DeliveryWorker } from "../smtp/delivery_worker.ts";
 *
 * declare const outbox: Outbox; // see Outbox.open
 * declare const worker: DeliveryWorker; // delivers the outbox
 * const mailer: AlertMailer = {
 *   enqueue: (msg, opts) => outbox.enqueue(msg, opts).then((id) => { worker.kick(); return id; }),
 *   deliveryFailing: () => worker.status().failing,
 * };
 * console.log(mailer.deliveryFailing());
 * ```
 */
export interface AlertMailer {
  /**
   * Stores one mail durably and resolves to its outbox id; rejects when it cannot (e.g. the disk is full), and
   * the monitor keeps the event to retry on the next poll. `tag` names the rule or sensor the mail is about.
   */
  enqueue(
    msg: { to: string[]; subject: string; text: string },
    opts: { critical: boolean; tag: string },
  ): Promise<string>;
  /** True while delivery is failing; the monitor then bundles further events into one digest. */
  deliveryFailing(): boolean;
  /**
   * Mail with one of `tags` that is still waiting in the queue and not being sent (optional). A new mail about
   * the same rule or sensor replaces it, so the newest mail the owner reads describes the current state.
   */
  pending?(tags: string[]): Promise<{ id: string; subject: string }[]>;
  /** Removes those queued mails (skipping any that started sending meanwhile); resolves to how many went. */
  withdraw?(ids: string[]): Promise<number>;
}

/**
 * Options for {@link AlertMonitor.open}.
 *
 * @example
 * ```ts
 * import type { Section } from "../config/section.ts";
 * import { readAlertsConfig } from "./alerts_config.ts";
 *
 * declare const root: Section; // the whole config document
 * declare const mailer: AlertMailer; // see AlertMailer
 * const opts: AlertMonitorOptions = {
 *   config: readAlertsConfig(root),
 *   mailer,
 *   stateFile: "/var/lib/outpost/alerts.json",
 *   host: "pi-freezer",
 *   board: "rpi4",
 * };
 * const monitor = await AlertMonitor.open(opts);
 * monitor.start();
 * ```
 */
export interface AlertMonitorOptions {
  /** The `[alerts]`, `[sensors.*]` and `[[rules]]` config. */
  config: AlertsConfig;
  /** Where alert mails are enqueued. */
  mailer: AlertMailer;
  /** The state file (the daemon passes `config.stateFile ?? <state_dir>/alerts.json`). */
  stateFile: string;
  /** Device name shown in subjects. */
  host: string;
  /** Board profile id. */
  board: string;
  /** Clock in ms since the epoch (default `Date.now`; tests may replace it). */
  now?: () => number;
}

/**
 * One sensor as {@link AlertMonitor.status} reports it.
 *
 * @example
 * ```ts
 * declare const monitor: AlertMonitor; // see AlertMonitor.open
 * const s: SensorStatus = monitor.status().sensors[0];
 * console.log(`${s.name}: ${s.value ?? "no reading"} ${s.unit}`);
 * ```
 */
export interface SensorStatus {
  /** The sensor's name (`[sensors.<name>]`). */
  name: string;
  /** Its type (thermal, w1, file, ...). */
  type: string;
  /** Unit shown after readings. */
  unit: string;
  /** Decimals shown. */
  decimals: number;
  /** Read interval in ms. */
  intervalMs: number;
  /** Failures are logged, never mailed. */
  optional: boolean;
  /** The last good reading, or null when none yet. */
  value: number | null;
  /** When the sensor was last read (good or not), ms since the epoch; null before the first read. */
  at: number | null;
  /** The last read's error, or null when it read fine. */
  error: string | null;
  /** Reads failed in a row. */
  failures: number;
  /** A SENSOR ERROR went out and no good reading came since. */
  failing: boolean;
  /** When that started. */
  failingSince: number | null;
}

/**
 * One rule as {@link AlertMonitor.status} reports it. `state`: "ok"; "pending" (some of the last `ofSamples`
 * readings breached, fewer than `forSamples`); "alert" (announced, `since`); "held" (tripped inside the cooldown,
 * mailed at `cooldownUntil` if it still stands).
 *
 * @example
 * ```ts
 * declare const monitor: AlertMonitor; // see AlertMonitor.open
 * const r: RuleStatus = monitor.status().rules[0];
 * if (r.state === "pending") console.log(`${r.breaches} of ${r.ofSamples}, alert at ${r.forSamples}`);
 * ```
 */
export interface RuleStatus {
  /** The rule id. */
  id: string;
  /** Its sensor. */
  sensor: string;
  /** Breach direction. */
  direction: "above" | "below";
  /** Threshold. */
  threshold: number;
  /** Hysteresis value it must get back past. */
  clearAt: number;
  /** Severity of its mails. */
  severity: string;
  /** Where it stands. */
  state: "ok" | "pending" | "alert" | "held";
  /** Breaching readings among the last `ofSamples`. */
  breaches: number;
  /** Breaches needed to alert. */
  forSamples: number;
  /** Window length. */
  ofSamples: number;
  /** When the standing alert started (ms), or null. */
  since: number | null;
  /** When the cooldown ends (ms), or null when none runs. */
  cooldownUntil: number | null;
  /** When the next reminder is due (ms), or null. */
  nextReminderAt: number | null;
  /** Reminders sent for the standing alert. */
  reminders: number;
  /** When the last alert mail went out (ms), or null. */
  lastAlertAt: number | null;
}

/**
 * What {@link AlertMonitor.status} returns.
 *
 * @example
 * ```ts
 * declare const monitor: AlertMonitor; // see AlertMonitor.open
 * const st: MonitorStatus = monitor.status();
 * console.log(st.samples, st.sensors.length, st.rules.length);
 * ```
 */
export interface MonitorStatus {
  /** Readings taken since start. */
  samples: number;
  /** Every configured sensor. */
  sensors: SensorStatus[];
  /** Every rule. */
  rules: RuleStatus[];
}

/** Most events a digest keeps; older ones are counted as dropped (the first and the latest are kept). */
const DIGEST_MAX_EVENTS = 200;

const log = new Logger("alerts");

/**
 * The alert monitor.
 *
 * @example
 * ```ts
 * import type { AlertsConfig } from "./alerts_config.ts";
 *
 * declare const alerts: AlertsConfig; // see readAlertsConfig
 * declare const mailer: AlertMailer; // see AlertMailer
 * const monitor = await AlertMonitor.open({ config: alerts, mailer, stateFile: "/var/lib/outpost/alerts.json",
 *   host: "pi-freezer", board: "rpi4" });
 * monitor.start();
 * // ... on SIGTERM:
 * await monitor.stop();
 * ```
 */
export class AlertMonitor {
  /** The config the monitor was opened with. */
  readonly config: AlertsConfig;
  /** The state file store (atomic JSON writes, only when something the user was told changes). */
  readonly store: AlertStateStore;
  #mailer: AlertMailer;
  #host: string;
  #board: string;
  #now: () => number;
  #state: AlertState;
  #sources = new Map<string, SensorSource>();
  #rulesBySensor = new Map<string, RuleConfig[]>();
  #windows = new Map<string, RuleWindow>();
  #failures = new Map<string, number>();
  #failLog = new Map<string, FailureLogBackoff>();
  #lastValue = new Map<string, number>();
  #lastSample = new Map<string, Sample>();
  #timers = new Map<string, ReturnType<typeof setTimeout>>();
  #inflight = new Set<Promise<void>>();
  #chain: Promise<void> = Promise.resolve();
  #running = false;
  #saveFailing = false;
  /** Samples taken (for tests and status). */
  samples = 0;

  private constructor(opts: AlertMonitorOptions, store: AlertStateStore, state: AlertState) {
    this.config = opts.config;
    this.store = store;
    this.#mailer = opts.mailer;
    this.#host = opts.host;
    this.#board = opts.board;
    this.#now = opts.now ?? Date.now;
    this.#state = state;
    for (const s of opts.config.sensors) {
      const src = new SensorSource(s, opts.config.sysfsRoot);
      src.fingerprint = state.sensors[s.name]?.fingerprint ?? null;
      this.#sources.set(s.name, src);
    }
    for (const r of opts.config.rules) {
      const list = this.#rulesBySensor.get(r.sensor) ?? [];
      list.push(r);
      this.#rulesBySensor.set(r.sensor, list);
    }
    // Forget state of rules and sensors that are no longer configured.
    const ruleIds = new Set(opts.config.rules.map((r) => r.id));
    for (const id of Object.keys(state.rules)) if (!ruleIds.has(id)) delete state.rules[id];
    for (const n of Object.keys(state.sensors)) if (!this.#sources.has(n)) delete state.sensors[n];
  }

  /** Loads the persisted state and returns a monitor (not yet polling). */
  static async open(opts: AlertMonitorOptions): Promise<AlertMonitor> {
    const dir = opts.stateFile.slice(0, opts.stateFile.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true }).catch(() => {});
    const store = new AlertStateStore(opts.stateFile);
    const state = await store.load();
    return new AlertMonitor(opts, store, state);
  }

  /** Starts polling every sensor (first reading at once) and retries mail left unsent by a previous run. */
  start(): void {
    if (this.#running || !this.config.enabled) return;
    this.#running = true;
    log.info("monitor.start", { sensors: this.#sources.size, rules: this.config.rules.length });
    for (const name of this.#sources.keys()) this.#schedule(name, 0);
  }

  /** Stops polling, waits for polls in progress and the last state write. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    await this.#chain;
    log.info("monitor.stop", { samples: this.samples });
  }

  /** A copy of the persisted state (for status pages and tests). */
  snapshot(): AlertState {
    return structuredClone(this.#state);
  }

  /**
   * Each sensor's last reading and each rule's state, for `outpost status` and the status page.
   *
   * @example
   * ```ts
   * declare const monitor: AlertMonitor; // see AlertMonitor.open
   * const { sensors, rules } = monitor.status(Date.now());
   * for (const s of sensors) console.log(s.name, s.value);
   * for (const r of rules) console.log(r.id, r.state);
   * ```
   */
  status(now: number = this.#now()): MonitorStatus {
    const sensors: SensorStatus[] = [];
    for (const [name, src] of this.#sources) {
      const c = src.config;
      const last = this.#lastSample.get(name);
      const good = last && last.error === undefined ? last : undefined;
      const health = this.#state.sensors[name]?.health;
      sensors.push({
        name,
        type: c.type,
        unit: c.unit,
        decimals: c.decimals,
        intervalMs: c.intervalMs,
        optional: c.optional,
        value: good ? good.value : (this.#lastValue.get(name) ?? null),
        at: last?.at ?? null,
        error: last?.error ?? null,
        failures: this.#failures.get(name) ?? 0,
        failing: health?.failing ?? false,
        failingSince: health?.since ?? null,
      });
    }
    const rules: RuleStatus[] = [];
    for (const r of this.config.rules) {
      const s = this.#state.rules[r.id] ?? initialRuleState();
      const w = this.#windows.get(r.id) ?? initialRuleWindow();
      let breaches = 0;
      for (let n = w.recent >>> 0; n; n &= n - 1) breaches++;
      const cooldownEnd = s.lastAlertAt !== null && r.cooldownMs > 0 ? s.lastAlertAt + r.cooldownMs : null;
      rules.push({
        id: r.id,
        sensor: r.sensor,
        direction: r.direction,
        threshold: r.threshold,
        clearAt: r.clearAt,
        severity: r.severity,
        state: s.alerting ? (s.announced ? "alert" : "held") : breaches > 0 ? "pending" : "ok",
        breaches,
        forSamples: r.forSamples,
        ofSamples: r.ofSamples,
        since: s.alerting ? s.since : null,
        cooldownUntil: cooldownEnd !== null && cooldownEnd > now ? cooldownEnd : null,
        nextReminderAt: s.alerting && s.announced ? s.nextReminderAt : null,
        reminders: s.reminders,
        lastAlertAt: s.lastAlertAt,
      });
    }
    return { samples: this.samples, sensors, rules };
  }

  #schedule(name: string, delay: number): void {
    if (!this.#running) return;
    const t = setTimeout(() => {
      this.#timers.delete(name);
      const p = this.pollSensor(name).finally(() => {
        this.#inflight.delete(p);
        this.#schedule(name, this.#sources.get(name)?.config.intervalMs ?? 60_000);
      });
      this.#inflight.add(p);
    }, delay);
    this.#timers.set(name, t);
  }

  /** Reads one sensor now and handles the result (exposed for tests and `outpost sensors --test`). */
  async pollSensor(name: string): Promise<void> {
    const src = this.#sources.get(name);
    if (!src) return;
    let sample: Sample;
    try {
      const value = await src.read();
      sample = { at: this.#now(), value };
    } catch (e) {
      const msg = e instanceof SensorReadError ? e.message : `Unexpected error: ${(e as Error).message}`;
      sample = { at: this.#now(), error: msg };
    }
    this.samples++;
    await this.#serial(() => this.#handle(src, sample));
  }

  /** Sends the digest or unsent mail if delivery works again; called on every poll, callable directly. */
  flush(): Promise<void> {
    return this.#serial(() => this.#dispatch([]));
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(fn).catch((e) => {
      log.error("monitor.failure", { error: (e as Error).message });
    });
    this.#chain = run;
    return run;
  }

  async #handle(src: SensorSource, sample: Sample): Promise<void> {
    const cfg = src.config;
    const events: AlertEvent[] = [];
    let persist = false;
    if (sample.error === undefined) this.#lastValue.set(cfg.name, sample.value);
    this.#lastSample.set(cfg.name, sample);
    this.#logRead(cfg.name, sample);

    const sensorState = this.#state.sensors[cfg.name] ??
      (this.#state.sensors[cfg.name] = { health: initialHealthState(), fingerprint: null });
    const h = stepHealth(
      { sensor: cfg.name, failAfter: cfg.failAfter, severity: "warning" },
      sensorState.health,
      this.#failures.get(cfg.name) ?? 0,
      sample,
    );
    this.#failures.set(cfg.name, h.failures);
    if (h.persist) {
      sensorState.health = h.state;
      persist = true;
    }
    if (!cfg.optional) events.push(...h.events);

    if (cfg.type === "file_changed" && src.fingerprint?.sha256 !== sensorState.fingerprint?.sha256) {
      sensorState.fingerprint = src.fingerprint;
      persist = true;
    }

    for (const rule of this.#rulesBySensor.get(cfg.name) ?? []) {
      const step = stepRule(
        rule,
        this.#state.rules[rule.id] ?? initialRuleState(),
        this.#windows.get(rule.id) ?? initialRuleWindow(),
        sample,
      );
      this.#windows.set(rule.id, step.window);
      const before = this.#state.rules[rule.id];
      if (step.state.alerting && !step.state.announced && step.state.trips > (before?.trips ?? 0)) {
        log.info("rule.suppressed", {
          rule: rule.id,
          sensor: cfg.name,
          value: sample.error === undefined ? sample.value : undefined,
          cooldown_until: isoSeconds((step.state.lastAlertAt ?? sample.at) + rule.cooldownMs),
          trips: step.state.trips,
        });
      }
      if (step.persist) {
        this.#state.rules[rule.id] = step.state;
        persist = true;
      }
      events.push(...step.events);
    }
    for (const ev of events) {
      log.info(`event.${ev.kind}`, { sensor: ev.sensor, rule: ev.rule ?? undefined, value: ev.value });
    }
    await this.#dispatch(events, persist);
  }

  /** Logs a failed read once, then at a growing interval ({@link FailureLogBackoff}), and the recovery once. */
  #logRead(sensor: string, sample: Sample): void {
    let b = this.#failLog.get(sensor);
    if (sample.error === undefined) {
      const run = b?.recovered(sample.at);
      if (run) {
        log.info("sensor.read_ok", {
          sensor,
          failures: run.failures,
          failing_for: formatDuration(sample.at - run.since),
        });
      }
      return;
    }
    if (!b) this.#failLog.set(sensor, b = new FailureLogBackoff());
    const d = b.failed(sample.at);
    if (d.log === "first") log.warn("sensor.read_failed", { sensor, error: sample.error });
    else if (d.log === "again") {
      log.warn("sensor.still_failing", {
        sensor,
        failures: d.failures,
        since: isoSeconds(d.since),
        error: sample.error,
        note: "logged again at a growing interval until it reads again",
      });
    }
  }

  /** Routes new events (and anything held back) to the mailer; persists first when anything changed. */
  async #dispatch(newEvents: AlertEvent[], changed = false): Promise<void> {
    const st = this.#state;
    const failing = this.#mailer.deliveryFailing();
    const digestMode = this.config.digest;
    // 1. Record where each new event goes, durably, before any mail is handed over.
    for (const ev of newEvents) {
      if (!failing || !digestMode || !st.digest.firstSent) {
        st.unsent.push(ev);
        if (failing && digestMode) st.digest.firstSent = true;
      } else {
        st.digest.events.push(ev);
        if (st.digest.events.length > DIGEST_MAX_EVENTS) {
          st.digest.events.splice(1, 1);
          st.digest.dropped++;
        }
      }
      changed = true;
    }
    if (!failing && st.digest.firstSent && st.digest.events.length === 0) {
      st.digest.firstSent = false;
      changed = true;
    }
    if (st.unsent.length === 0 && (failing || st.digest.events.length === 0)) {
      if (changed) await this.#save();
      return;
    }
    if (changed) await this.#save();

    // 2. Delivery works again: the digest goes first, as one mail per recipient list.
    if (!failing && st.digest.events.length === 1 && st.digest.dropped === 0) {
      // A digest of one is just that event's own mail.
      st.unsent.unshift(st.digest.events[0]);
      st.digest = { firstSent: false, events: [], dropped: 0 };
      await this.#save();
    }
    if (!failing && st.digest.events.length > 0) {
      if (await this.#sendDigest()) {
        st.digest = { firstSent: false, events: [], dropped: 0 };
        await this.#save();
      }
    }
    // 3. Single events.
    let sentAny = false;
    while (st.unsent.length > 0) {
      const ev = st.unsent[0];
      if (!(await this.#sendEvent(ev))) break;
      st.unsent.shift();
      sentAny = true;
    }
    if (sentAny) await this.#save();
  }

  /**
   * Persists the state. A failed write (read-only or full SD card) is logged and does not stop mail: delivering
   * the alert matters more than remembering it.
   */
  async #save(): Promise<void> {
    try {
      await this.store.save(this.#state);
      if (this.#saveFailing) log.info("state.write_ok", { path: this.store.path });
      this.#saveFailing = false;
    } catch (e) {
      if (!this.#saveFailing) {
        log.error("state.write_failed", { path: this.store.path, error: (e as Error).message });
      }
      this.#saveFailing = true;
    }
  }

  #recipients(ev: AlertEvent): string[] {
    if (ev.rule !== null) {
      const r = this.config.rules.find((x) => x.id === ev.rule);
      if (r) return r.to;
    }
    if (this.config.to.length > 0) return this.config.to;
    const set = new Set<string>();
    for (const r of this.#rulesBySensor.get(ev.sensor) ?? []) for (const a of r.to) set.add(a);
    return [...set];
  }

  #ctx(sensor: string): MailContext {
    const s: SensorConfig | undefined = this.#sources.get(sensor)?.config;
    return { host: this.#host, board: this.#board, unit: s?.unit ?? "", decimals: s?.decimals ?? 2 };
  }

  async #sendEvent(ev: AlertEvent): Promise<boolean> {
    const to = this.#recipients(ev);
    if (to.length === 0) {
      log.warn("mail.no_recipients", { sensor: ev.sensor, rule: ev.rule ?? undefined, kind: ev.kind });
      return true;
    }
    const rule = ev.rule !== null ? this.config.rules.find((x) => x.id === ev.rule) : undefined;
    const rendered = renderEventMail(
      ev,
      rule?.templates ?? this.config.templates,
      this.#ctx(ev.sensor),
    );
    const tag = eventTag(ev);
    const stale = await this.#pending([tag]);
    const subject = rendered.subject;
    const text = stale.length === 0
      ? rendered.text
      : rendered.text.replace(/\n$/, "") + replacedNote(stale.map((p) => p.subject)) + "\n";
    try {
      const id = await this.#mailer.enqueue({ to, subject, text }, {
        critical: ev.severity === "critical",
        tag,
      });
      log.info("mail.enqueued", { id, kind: ev.kind, sensor: ev.sensor });
      await this.#withdraw(stale.map((p) => p.id).filter((x) => x !== id));
      return true;
    } catch (e) {
      log.error("mail.enqueue_failed", { kind: ev.kind, sensor: ev.sensor, error: (e as Error).message });
      return false;
    }
  }

  async #pending(tags: string[]): Promise<{ id: string; subject: string }[]> {
    if (!this.#mailer.pending) return [];
    try {
      return await this.#mailer.pending(tags);
    } catch (e) {
      log.warn("mail.pending_failed", { error: (e as Error).message });
      return [];
    }
  }

  async #withdraw(ids: string[]): Promise<void> {
    if (ids.length === 0 || !this.#mailer.withdraw) return;
    try {
      const n = await this.#mailer.withdraw(ids);
      log.info("mail.superseded", { count: n, ids: ids.join(",") });
    } catch (e) {
      log.warn("mail.withdraw_failed", { error: (e as Error).message });
    }
  }

  #currentStateLines(): string[] {
    const lines: string[] = [];
    for (const r of this.config.rules) {
      const s = this.#state.rules[r.id];
      const v = this.#lastValue.get(r.sensor);
      const ctx = this.#ctx(r.sensor);
      const reading = v === undefined
        ? "no reading"
        : `${formatNumber(v, ctx.decimals)}${ctx.unit ? " " + ctx.unit : ""}`;
      const since = s?.since ? ` since ${new Date(s.since).toISOString().replace(/\.\d{3}Z$/, "Z")}` : "";
      lines.push(`  ${r.id}: ${s?.alerting ? `ALERT${since}` : "OK"} (${r.sensor} ${reading})`);
    }
    for (const [name, s] of Object.entries(this.#state.sensors)) {
      if (s.health.failing) lines.push(`  sensor ${name}: SENSOR ERROR (${s.health.lastError})`);
    }
    return lines;
  }

  async #sendDigest(): Promise<boolean> {
    const d = this.#state.digest;
    const groups = new Map<string, AlertEvent[]>();
    for (const ev of d.events) {
      const key = this.#recipients(ev).join(",");
      const g = groups.get(key) ?? [];
      g.push(ev);
      groups.set(key, g);
    }
    for (const [key, evs] of groups) {
      if (!key) continue;
      // A digest that failed halfway: the recipient lists it already reached do not get it again.
      if (d.sentTo?.includes(key)) continue;
      const tags = [...new Set(evs.map(eventTag))];
      const stale = await this.#pending(tags);
      const { subject, text } = renderDigestMail({
        host: this.#host,
        board: this.#board,
        eventLines: evs.map((ev) => eventLine(ev, this.#ctx(ev.sensor))),
        first: evs[0].at,
        last: evs[evs.length - 1].at,
        count: evs.length + (groups.size === 1 ? d.dropped : 0),
        dropped: d.dropped,
        currentState: this.#currentStateLines(),
        replaced: stale.map((p) => p.subject),
      });
      try {
        const id = await this.#mailer.enqueue({ to: key.split(","), subject, text }, {
          critical: evs.some((e) => e.severity === "critical"),
          tag: "alert-digest",
        });
        log.info("mail.digest_enqueued", { id, events: evs.length });
        await this.#withdraw(stale.map((p) => p.id).filter((x) => x !== id));
      } catch (e) {
        log.error("mail.enqueue_failed", { kind: "digest", error: (e as Error).message });
        return false;
      }
      d.sentTo = [...(d.sentTo ?? []), key];
      await this.#save();
    }
    return true;
  }
}

/** The outbox tag of an event's own mail: `alert:<rule>` or `sensor:<sensor>`. */
function eventTag(ev: AlertEvent): string {
  return ev.rule !== null ? `alert:${ev.rule}` : `sensor:${ev.sensor}`;
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
