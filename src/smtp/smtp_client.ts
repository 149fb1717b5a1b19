/**
 * The SMTP client (RFC 5321): {@link SmtpClient} has one method per verb, in the manner of Go's `net/smtp`, and
 * {@link deliver} runs a whole session with outpost's security policy.
 *
 * Policy enforced by {@link deliver}:
 * - `starttls` fails closed: when the server does not offer STARTTLS, or the upgrade fails, the connection is
 *   dropped right there — no AUTH, no MAIL, not even QUIT is sent — and the error names the stage.
 * - `tls` wraps the connection from the first byte (port 465); `none` is refused to anything but loopback unless
 *   `allowInsecure` is set, and AUTH is never sent in plaintext except to loopback.
 * - After STARTTLS the reader's pre-TLS bytes are discarded (`LineReader.setSource`) and EHLO is sent again.
 * - Every command argument is checked for CR, LF and NUL (command injection), every reply has a timeout, and the
 *   message body has a per-write timeout.
 * - PIPELINING batches MAIL and the RCPTs when offered; SIZE is checked before MAIL; BODY=8BITMIME and SMTPUTF8
 *   are used when offered and needed. A refused recipient is reported; the others still get the message.
 *
 * @module
 */

import { LineReader } from "../net/line_reader.ts";
import { Logger } from "../log/logger.ts";
import { DataWriter } from "./dot_stuffing.ts";
import {
  formatReply,
  parseExtensions,
  readReply,
  SmtpError,
  type SmtpReply,
  type SmtpStage,
} from "./smtp_reply.ts";
import type { NodeConn } from "../net/node_conn.ts";
import { connectSocket, type SmtpTlsOptions, upgradeSocket } from "./smtp_socket.ts";

export { SmtpError } from "./smtp_reply.ts";
import { SevenBitWriter } from "./seven_bit.ts";
export type { SmtpReply, SmtpStage } from "./smtp_reply.ts";

const log = new Logger("smtp");
const encoder = new TextEncoder();

/**
 * How the connection is protected: `starttls` (plain start, then STARTTLS, refusing a server without it), `tls`
 * (implicit TLS from the first byte, port 465) or `none` (loopback only unless `allowInsecure`).
 *
 * @example
 * ```ts
 * const security: SmtpSecurity = "starttls";
 * console.log(security);
 * ```
 */
export type SmtpSecurity = "starttls" | "tls" | "none";

/**
 * Everything needed to reach and log in to the mail server (the `[smtp]` config table, see `smtp_config.ts`).
 *
 * @example
 * ```ts
 * const opts: SmtpClientOptions = {
 *   host: "127.0.0.1", port: 25, security: "none", allowInsecure: false, authMethod: "auto",
 *   heloName: "pi-freezer", from: "pi@example.com", connectTimeoutMs: 10_000, replyTimeoutMs: 30_000,
 *   dataTimeoutMs: 120_000, passwordCommandTimeoutMs: 10_000,
 * };
 * console.log(`${opts.host}:${opts.port}`);
 * ```
 */
export interface SmtpClientOptions {
  /** Mail server host name or IP address. */
  host: string;
  /** Mail server port (587 for starttls, 465 for tls, 25 for none by default in the config). */
  port: number;
  /** How the connection is protected. */
  security: SmtpSecurity;
  /** Allows `security = "none"` to a host that is not loopback (AUTH is still refused there). */
  allowInsecure: boolean;
  /** PEM file of CA certificates to trust instead of the default root store. */
  caFile?: string;
  /** SHA-256 fingerprint pin of the server certificate; when set, it alone decides trust. */
  fingerprintSha256?: string;
  /** Name the certificate must carry; default `host`. */
  tlsServername?: string;
  /** AUTH user name; without it no AUTH is attempted. */
  username?: string;
  /** The password itself (prefer `passwordEnv` or `passwordCommand`: the config file may be readable). */
  password?: string;
  /** Name of an environment variable holding the password. */
  passwordEnv?: string;
  /** A command (argv) whose stdout is the password or token, run for every session. */
  passwordCommand?: string[];
  /** How long `passwordCommand` may run before it is killed and the session fails, in ms (default 10 000). */
  passwordCommandTimeoutMs: number;
  /** AUTH mechanism: `auto` picks PLAIN or LOGIN from what the server offers. */
  authMethod: "auto" | "plain" | "login";
  /** Name sent in EHLO/HELO (the board's name). */
  heloName: string;
  /** Default envelope sender and From address. */
  from: string;
  /** Default display name for From. */
  fromName?: string;
  /** Longest wait for the TCP (and implicit TLS) connection, in ms (default 15 000). */
  connectTimeoutMs: number;
  /** Longest wait for one reply line to a command, in ms (default 60 000). */
  replyTimeoutMs: number;
  /** Longest wait for one body write and for the reply to the final ".". */
  dataTimeoutMs: number;
  /** `[smtp] aliases`: local names (lower case, `default` for any other) to addresses; used by sendmail. */
  aliases?: Record<string, string[]>;
}

/**
 * Options for {@link SmtpClient.connect}.
 *
 * @example
 * ```ts
 * const c: SmtpConnectOptions = { host: "127.0.0.1", port: 2525, tls: null, connectTimeoutMs: 5000,
 *   replyTimeoutMs: 5000 };
 * console.log(`${c.host}:${c.port}`);
 * ```
 */
export interface SmtpConnectOptions {
  /** Mail server host name or IP address. */
  host: string;
  /** Mail server port. */
  port: number;
  /** TLS settings for implicit TLS, or null for a plain TCP start. */
  tls: SmtpTlsOptions | null;
  /** Longest wait for the connection and the server's greeting, in ms. */
  connectTimeoutMs: number;
  /** Longest wait for one reply to a command, in ms. */
  replyTimeoutMs: number;
  /** Longest wait for one body write and the reply to the final "."; default 4 × `replyTimeoutMs`. */
  dataTimeoutMs?: number;
}

/**
 * True for 127.0.0.0/8, ::1 and "localhost": hosts where `security = "none"` is allowed without
 * `allowInsecure`.
 *
 * @example
 * ```ts
 * isLoopbackHost("127.0.0.1"); // true
 * isLoopbackHost("[::1]"); // true
 * isLoopbackHost("smtp.gmail.com"); // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    h === "::ffff:127.0.0.1";
}

/**
 * Refuses a command argument containing CR, LF or NUL, which would let it smuggle a second command.
 *
 * @example
 * ```ts
 * checkArgument("a@example.com", "MAIL"); // ok
 * ```
 */
export function checkArgument(arg: string, stage: SmtpStage): void {
  if (/[\r\n\0]/.test(arg)) {
    throw new SmtpError(stage, `SMTP ${stage} refused: an argument contains CR, LF or NUL.`, null, true);
  }
}

/**
 * A low-level SMTP connection: one method per command, each reading and checking its reply.
 *
 * @example
 * ```ts
 * const c = await SmtpClient.connect({ host: "127.0.0.1", port: 2525, tls: null, connectTimeoutMs: 5000,
 *   replyTimeoutMs: 5000 });
 * await c.ehlo("board");
 * await c.mail("a@example.com");
 * await c.rcpt("b@example.com");
 * await c.data(async (w) => await w.write(new TextEncoder().encode("Subject: hi\r\n\r\nhello\r\n")));
 * await c.quit();
 * ```
 */
export class SmtpClient {
  #conn: NodeConn;
  readonly #reader: LineReader;
  readonly #replyTimeoutMs: number;
  readonly #dataTimeoutMs: number;
  #tls: boolean;
  #extensions = new Map<string, string>();
  /** The server's 220 greeting. */
  readonly greeting: SmtpReply;

  private constructor(
    conn: NodeConn,
    tls: boolean,
    greeting: SmtpReply,
    reader: LineReader,
    o: SmtpConnectOptions,
  ) {
    this.#conn = conn;
    this.#tls = tls;
    this.greeting = greeting;
    this.#reader = reader;
    this.#replyTimeoutMs = o.replyTimeoutMs;
    this.#dataTimeoutMs = o.dataTimeoutMs ?? o.replyTimeoutMs * 4;
  }

  /** Connects (with implicit TLS when `opts.tls` is set) and reads the 220 greeting. */
  static async connect(opts: SmtpConnectOptions): Promise<SmtpClient> {
    let conn: NodeConn;
    try {
      conn = await connectSocket(opts.host, opts.port, null, opts.connectTimeoutMs);
    } catch (e) {
      throw new SmtpError("connect", `SMTP connect to ${opts.host}:${opts.port} failed: ${errText(e)}`);
    }
    if (opts.tls) {
      try {
        conn = await upgradeSocket(conn, opts.tls, opts.connectTimeoutMs);
      } catch (e) {
        throw new SmtpError("TLS", `SMTP TLS with ${opts.host}:${opts.port} failed: ${errText(e)}`);
      }
    }
    const reader = new LineReader(conn, { maxLineLength: 2048 });
    const greeting = await readWithTimeout(conn, reader, "greeting", opts.replyTimeoutMs);
    if (greeting.code !== 220) {
      conn.close();
      throw SmtpError.fromReply("greeting", greeting);
    }
    return new SmtpClient(conn, opts.tls !== null, greeting, reader, opts);
  }

  /** True once the connection is encrypted. */
  get isTls(): boolean {
    return this.#tls;
  }

  /** The extensions from the last EHLO (upper-case keyword to parameters). */
  get extensions(): ReadonlyMap<string, string> {
    return this.#extensions;
  }

  /** Sends raw command lines in one write (each checked for CR/LF), for pipelining. */
  async #send(lines: string[], stage: SmtpStage): Promise<void> {
    for (const l of lines) checkArgument(l, stage);
    try {
      await this.#conn.write(encoder.encode(lines.map((l) => l + "\r\n").join("")));
    } catch (e) {
      throw new SmtpError(stage, `SMTP ${stage} failed: could not send the command: ${errText(e)}`);
    }
  }

  /** Reads one reply with the reply timeout. */
  reply(stage: SmtpStage, timeoutMs: number = this.#replyTimeoutMs): Promise<SmtpReply> {
    return readWithTimeout(this.#conn, this.#reader, stage, timeoutMs);
  }

  async #command(line: string, stage: SmtpStage, ok: number[], what = ""): Promise<SmtpReply> {
    await this.#send([line], stage);
    const r = await this.reply(stage);
    if (!ok.includes(r.code)) throw SmtpError.fromReply(stage, r, what);
    return r;
  }

  /** EHLO (falling back to HELO when EHLO is not recognised); records the extensions. */
  async ehlo(name: string): Promise<SmtpReply> {
    checkArgument(name, "EHLO");
    await this.#send([`EHLO ${name}`], "EHLO");
    const r = await this.reply("EHLO");
    if (r.code === 250) {
      this.#extensions = parseExtensions(r);
      return r;
    }
    if (r.code >= 500) {
      this.#extensions = new Map();
      return await this.#command(`HELO ${name}`, "EHLO", [250]);
    }
    throw SmtpError.fromReply("EHLO", r);
  }

  /** STARTTLS and the TLS handshake; the caller must send EHLO again afterwards. */
  async startTls(opts: SmtpTlsOptions, timeoutMs: number): Promise<void> {
    await this.#command("STARTTLS", "STARTTLS", [220]);
    try {
      this.#conn = await upgradeSocket(this.#conn, opts, timeoutMs);
    } catch (e) {
      throw new SmtpError("TLS", `SMTP TLS upgrade after STARTTLS failed: ${errText(e)}`);
    }
    const dropped = this.#reader.setSource(this.#conn);
    if (dropped > 0) log.warn("starttls.discarded", { bytes: dropped });
    this.#tls = true;
    this.#extensions = new Map();
  }

  /** AUTH PLAIN or LOGIN (`mechanism` "auto" picks PLAIN when offered). Never logs the secret. */
  async auth(
    username: string,
    password: string,
    mechanism: "auto" | "plain" | "login" = "auto",
  ): Promise<SmtpReply> {
    const offered = (this.#extensions.get("AUTH") ?? "").toUpperCase().split(/\s+/);
    let mech = mechanism;
    if (mech === "auto") {
      mech = offered.includes("PLAIN") ? "plain" : offered.includes("LOGIN") ? "login" : "plain";
    }
    if (!offered.includes(mech.toUpperCase())) {
      throw new SmtpError(
        "AUTH",
        `SMTP AUTH failed: the server does not offer AUTH ${mech.toUpperCase()} (it offers "${
          offered.join(" ")
        }").`,
        null,
        true,
      );
    }
    if (mech === "plain") {
      return await this.#command(`AUTH PLAIN ${b64(`\0${username}\0${password}`)}`, "AUTH", [235]);
    }
    await this.#command("AUTH LOGIN", "AUTH", [334]);
    await this.#command(b64(username), "AUTH", [334]);
    return await this.#command(b64(password), "AUTH", [235]);
  }

  /** MAIL FROM with optional ESMTP parameters (`SIZE=123`, `BODY=8BITMIME`, `SMTPUTF8`). */
  mail(from: string, params: string[] = []): Promise<SmtpReply> {
    return this.#command(["MAIL FROM:<" + from + ">", ...params].join(" "), "MAIL", [250]);
  }

  /** RCPT TO for one recipient; throws an {@link SmtpError} naming the recipient when refused. */
  rcpt(to: string): Promise<SmtpReply> {
    return this.#command(`RCPT TO:<${to}>`, "RCPT", [250, 251], to);
  }

  /**
   * MAIL and every RCPT in one write (PIPELINING, RFC 2920), then their replies in order. MAIL's refusal throws;
   * RCPT replies are returned as they are for the caller to sort.
   */
  async envelope(from: string, params: string[], to: string[]): Promise<SmtpReply[]> {
    const lines = [["MAIL FROM:<" + from + ">", ...params].join(" "), ...to.map((t) => `RCPT TO:<${t}>`)];
    await this.#send(lines, "MAIL");
    const mail = await this.reply("MAIL");
    const replies: SmtpReply[] = [];
    for (const _ of to) replies.push(await this.reply("RCPT"));
    if (mail.code !== 250) throw SmtpError.fromReply("MAIL", mail);
    return replies;
  }

  /**
   * DATA: sends the body that `body` writes through a dot-stuffing {@link DataWriter}, awaits `beforeDot`, sends
   * the final "." and resolves to the server's final reply (250), throwing for anything else.
   */
  async data(body: (w: DataWriter) => Promise<void>, beforeDot?: () => Promise<void>): Promise<SmtpReply> {
    await this.#command("DATA", "DATA", [354]);
    const conn = this.#conn;
    const ms = this.#dataTimeoutMs;
    const sink = {
      write: async (d: Uint8Array) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          await Promise.race([
            conn.write(d),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => {
                // Reject first: closing makes the blocked write fail with ECANCELED at once, and the race must
                // report the timeout, not that.
                reject(
                  new SmtpError(
                    "DATA",
                    `SMTP DATA failed: the server did not take the message within ${ms} ms.`,
                  ),
                );
                conn.close();
              }, ms);
            }),
          ]);
        } catch (e) {
          if (e instanceof SmtpError) throw e;
          throw new SmtpError("DATA", `SMTP DATA failed: the connection broke while sending: ${errText(e)}`);
        } finally {
          clearTimeout(timer);
        }
      },
    };
    const w = new DataWriter(sink, { dotStuff: true });
    await body(w);
    await w.end(beforeDot);
    const r = await this.reply("DATA", ms);
    if (r.code !== 250) throw SmtpError.fromReply("DATA", r);
    return r;
  }

  /** RSET. */
  rset(): Promise<SmtpReply> {
    return this.#command("RSET", "MAIL", [250]);
  }

  /** NOOP. */
  noop(): Promise<SmtpReply> {
    return this.#command("NOOP", "MAIL", [250]);
  }

  /** QUIT (errors ignored) and close. */
  async quit(): Promise<void> {
    try {
      await this.#send(["QUIT"], "QUIT");
      await this.reply("QUIT", Math.min(this.#replyTimeoutMs, 5000));
    } catch {
      // The message is already settled; a rude close is fine.
    } finally {
      this.close();
    }
  }

  /** Closes the connection without QUIT. */
  close(): void {
    this.#conn.close();
  }
}

function b64(s: string): string {
  const bytes = encoder.encode(s);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function errText(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return /[.!?]$/.test(m) ? m : m + ".";
}

async function readWithTimeout(
  conn: NodeConn,
  reader: LineReader,
  stage: SmtpStage,
  ms: number,
): Promise<SmtpReply> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const p = readReply(reader, stage);
  p.catch(() => {});
  try {
    const r = await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          conn.close();
          reject(new SmtpError(stage, `SMTP ${stage} failed: no reply from the server within ${ms} ms.`));
        }, ms);
      }),
    ]);
    if (r === null) {
      conn.close();
      throw new SmtpError(stage, `SMTP ${stage} failed: the server closed the connection without a reply.`);
    }
    return r;
  } catch (e) {
    if (e instanceof SmtpError) throw e;
    conn.close();
    throw new SmtpError(stage, `SMTP ${stage} failed: ${errText(e)}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The message to send: its size (for SIZE), whether it needs 8BITMIME/SMTPUTF8, and a function that writes it.
 *
 * @example
 * ```ts
 * const bytes = new TextEncoder().encode("Subject: hi\r\n\r\nhello\r\n");
 * const src: MessageSource = { size: bytes.length, eightBit: false, smtputf8: false,
 *   write: (w) => w.write(bytes) };
 * console.log(src.size);
 * ```
 */
export interface MessageSource {
  /** Size of the message in bytes, announced as `SIZE=` and checked against the server's limit first. */
  size: number;
  /**
   * The message has 8-bit bytes: sent with `BODY=8BITMIME` when the server offers it, else converted to 7 bit
   * (quoted-printable, see `seven_bit.ts`) on the way out.
   */
  eightBit: boolean;
  /** A line is longer than 998 octets: such parts are sent quoted-printable (RFC 5321 allows no longer lines). */
  longLines?: boolean;
  /** Addresses use UTF-8: sent with `SMTPUTF8` (refused with a permanent error if the server lacks it). */
  smtputf8: boolean;
  /** Writes the message (with LF or CRLF line ends) to `w`, which dot-stuffs it; may be called once per try. */
  write(w: Pick<DataWriter, "write">): Promise<void>;
}

/**
 * The outcome of {@link deliver}: who got the message, who was refused and why, and the server's final reply.
 *
 * @example
 * ```ts
 * declare const opts: SmtpClientOptions; // the [smtp] table
 * declare const src: MessageSource; // the message
 * const r = await deliver(opts, { from: "a@x", to: ["b@x"] }, src);
 * for (const f of r.refused) console.log(f.rcpt, f.error.message);
 * ```
 */
export interface DeliveryResult {
  /** Recipients the server accepted. */
  accepted: string[];
  /** Recipients the server refused, each with the refusal (permanent or temporary, see `SmtpError`). */
  refused: { rcpt: string; error: SmtpError }[];
  /** The server's reply to the final "." (250 with its queue id, usually). */
  reply: SmtpReply;
}

/**
 * Resolves the password from `password`, `passwordEnv` or `passwordCommand` (run with a timeout); undefined when
 * none is configured.
 *
 * @example
 * ```ts
 * const pw = await resolvePassword({ passwordEnv: "SMTP_PASSWORD", passwordCommandTimeoutMs: 10_000 });
 * console.log(pw === undefined ? "no password set" : "password found");
 * ```
 */
export async function resolvePassword(
  o: Pick<SmtpClientOptions, "password" | "passwordEnv" | "passwordCommand" | "passwordCommandTimeoutMs">,
): Promise<string | undefined> {
  if (o.password !== undefined) return o.password;
  if (o.passwordEnv !== undefined) {
    const v = Deno.env.get(o.passwordEnv);
    if (v === undefined) {
      throw new SmtpError("AUTH", `SMTP AUTH failed: the environment variable ${o.passwordEnv} is not set.`);
    }
    return v;
  }
  if (o.passwordCommand && o.passwordCommand.length > 0) {
    const [cmd, ...args] = o.passwordCommand;
    const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, o.passwordCommandTimeoutMs);
    try {
      const out = await child.output();
      if (timedOut) {
        throw new SmtpError(
          "AUTH",
          `SMTP AUTH failed: the password command did not finish within ${o.passwordCommandTimeoutMs} ms.`,
        );
      }
      if (!out.success) {
        throw new SmtpError("AUTH", `SMTP AUTH failed: the password command exited with status ${out.code}.`);
      }
      return new TextDecoder().decode(out.stdout).replace(/\r?\n$/, "");
    } finally {
      clearTimeout(timer);
    }
  }
  return undefined;
}

/** Reads the CA file and builds the TLS settings for `opts`. */
async function tlsOptions(opts: SmtpClientOptions): Promise<SmtpTlsOptions> {
  let ca: string | undefined;
  if (opts.caFile) {
    try {
      ca = await Deno.readTextFile(opts.caFile);
    } catch (e) {
      throw new SmtpError(
        "TLS",
        `SMTP TLS failed: cannot read ca_file ${opts.caFile}: ${errText(e)}`,
        null,
        false,
      );
    }
  }
  return { servername: opts.tlsServername ?? opts.host, ca, fingerprintSha256: opts.fingerprintSha256 };
}

/**
 * Runs one whole SMTP session: connect, TLS as configured, EHLO, AUTH, MAIL, RCPTs, DATA, QUIT.
 *
 * Resolves when the server accepted the message for at least one recipient (refusals of the others are in the
 * result); throws an {@link SmtpError} naming the stage otherwise. `hooks.beforeDot` runs after the whole body was
 * sent and right before the final ".", which is the moment the server may commit the message.
 *
 * @example
 * ```ts
 * declare const opts: SmtpClientOptions; // the [smtp] table
 * const bytes = new TextEncoder().encode("Subject: test\r\n\r\nhello\r\n");
 * const result = await deliver(opts, { from: "pi@example.com", to: ["me@example.com"] },
 *   { size: bytes.length, eightBit: false, smtputf8: false, write: (w) => w.write(bytes) });
 * console.log(result.reply.code); // 250
 * ```
 */
export async function deliver(
  opts: SmtpClientOptions,
  envelope: { from: string; to: string[] },
  source: MessageSource,
  hooks: { beforeDot?: () => Promise<void> } = {},
): Promise<DeliveryResult> {
  const loopback = isLoopbackHost(opts.host);
  if (opts.security === "none" && !loopback && !opts.allowInsecure) {
    throw new SmtpError(
      "connect",
      `SMTP connect refused: security is "none" and ${opts.host} is not a loopback address; ` +
        `use starttls or tls, or set allow_insecure = true.`,
      null,
      true,
    );
  }
  if (envelope.to.length === 0) {
    throw new SmtpError("RCPT", "SMTP RCPT refused: the message has no recipients.", null, true);
  }
  checkArgument(envelope.from, "MAIL");
  for (const t of envelope.to) checkArgument(t, "RCPT");
  const password = opts.username !== undefined ? await resolvePassword(opts) : undefined;
  const tlsOpts = opts.security === "none" ? null : await tlsOptions(opts);
  const client = await SmtpClient.connect({
    host: opts.host,
    port: opts.port,
    tls: opts.security === "tls" ? tlsOpts : null,
    connectTimeoutMs: opts.connectTimeoutMs,
    replyTimeoutMs: opts.replyTimeoutMs,
    dataTimeoutMs: opts.dataTimeoutMs,
  });
  let done = false;
  try {
    await client.ehlo(opts.heloName);
    if (opts.security === "starttls") {
      if (!client.extensions.has("STARTTLS")) {
        throw new SmtpError(
          "STARTTLS",
          `SMTP STARTTLS failed: ${opts.host} does not offer STARTTLS and security is "starttls"; ` +
            "nothing was sent.",
        );
      }
      await client.startTls(tlsOpts!, opts.connectTimeoutMs);
      await client.ehlo(opts.heloName);
      log.info("tls", { host: opts.host });
    }
    if (opts.username !== undefined) {
      if (!client.isTls && !(opts.security === "none" && loopback)) {
        throw new SmtpError("AUTH", "SMTP AUTH refused: the connection is not encrypted.", null, true);
      }
      if (!client.extensions.has("AUTH")) {
        throw new SmtpError("AUTH", `SMTP AUTH failed: ${opts.host} does not offer AUTH.`, null, true);
      }
      await client.auth(opts.username, password ?? "", opts.authMethod);
      log.info("auth", { host: opts.host, user: opts.username });
    }
    const ext = client.extensions;
    const params: string[] = [];
    // RFC 6152: 8-bit data only to a server that offers 8BITMIME; otherwise (and for lines over 998 octets)
    // the message is converted to quoted-printable while it is sent.
    const convert = (source.eightBit && !ext.has("8BITMIME")) || source.longLines === true;
    if (ext.has("SIZE")) {
      const limit = Number(ext.get("SIZE"));
      if (limit > 0 && source.size > limit) {
        throw new SmtpError(
          "MAIL",
          `SMTP MAIL refused: the message is ${source.size} bytes and ${opts.host} accepts at most ${limit}.`,
          null,
          true,
        );
      }
      // RFC 1870 declares the size as transmitted; a converted message grows by an amount known only once it
      // is sent, so it declares none (the stored size above is still a lower bound the server's limit must fit).
      if (!convert) params.push(`SIZE=${source.size}`);
    }
    if (source.eightBit && !convert) params.push("BODY=8BITMIME");
    if (convert) {
      log.info("7bit", { host: opts.host, reason: source.longLines ? "long lines" : "no 8BITMIME" });
    }
    if (source.smtputf8) {
      if (!ext.has("SMTPUTF8")) {
        // deno-lint-ignore no-control-regex
        const utf8 = [envelope.from, ...envelope.to].filter((a) => /[^\x00-\x7f]/.test(a));
        throw new SmtpError(
          "MAIL",
          `SMTP MAIL refused: ${utf8.join(", ")} ${
            utf8.length === 1 ? "is" : "are"
          } not an ASCII address and ` +
            `${opts.host} does not offer SMTPUTF8, so it cannot be sent there (use an ASCII address).`,
          null,
          true,
        );
      }
      params.push("SMTPUTF8");
    }
    const accepted: string[] = [];
    const refused: { rcpt: string; error: SmtpError }[] = [];
    const sort = (rcpt: string, r: SmtpReply) => {
      if (r.code === 250 || r.code === 251) accepted.push(rcpt);
      else refused.push({ rcpt, error: SmtpError.fromReply("RCPT", r, rcpt) });
    };
    if (ext.has("PIPELINING")) {
      const replies = await client.envelope(envelope.from, params, envelope.to);
      envelope.to.forEach((t, i) => sort(t, replies[i]));
    } else {
      await client.mail(envelope.from, params);
      for (const t of envelope.to) {
        try {
          sort(t, await client.rcpt(t));
        } catch (e) {
          if (!(e instanceof SmtpError) || e.reply === null) throw e;
          refused.push({ rcpt: t, error: e });
        }
      }
    }
    for (const f of refused) log.warn("rcpt.refused", { rcpt: f.rcpt, reply: formatReply(f.error.reply!) });
    if (accepted.length === 0) {
      const permanent = refused.every((f) => f.error.permanent);
      throw new SmtpError(
        "RCPT",
        `SMTP RCPT failed: every recipient was refused: ${refused.map((f) => f.error.message).join(" ")}`,
        refused[0]?.error.reply ?? null,
        permanent,
      );
    }
    const reply = await client.data(async (w) => {
      if (!convert) return await source.write(w);
      const seven = new SevenBitWriter(w);
      await source.write(seven);
      await seven.end();
    }, hooks.beforeDot);
    done = true;
    log.info("accepted", { host: opts.host, rcpts: accepted.length, reply: formatReply(reply) });
    return { accepted, refused, reply };
  } finally {
    if (done) await client.quit();
    else client.close();
  }
}
