/**
 * outpost: an allocation-conscious FTP server, SMTP client and alert monitor for small ARM boards.
 *
 * This module is the library's public API.
 *
 * @example
 * ```ts
 * import { LineReader } from "./mod.ts";
 * ```
 *
 * @module
 */

export { closeQuietly, writeAll } from "./src/net/byte_conn.ts";
export type { ByteConn } from "./src/net/byte_conn.ts";
export { LineReader, LineTooLongError } from "./src/net/line_reader.ts";
export type { LineReaderOptions } from "./src/net/line_reader.ts";
export { formatLogLine, Logger, setLogSink } from "./src/log/logger.ts";
export type { LogSink, LogValue } from "./src/log/logger.ts";
export { ConfigError, parseDuration, parseSize, Section } from "./src/config/section.ts";
