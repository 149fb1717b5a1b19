/**
 * outpost: an allocation-conscious FTP server, SMTP client and alert monitor for small ARM boards.
 *
 * This module is the library's public API: the FTP server, the SMTP client with its durable outbox, the alert
 * monitor, the config loader, and the daemon that runs them together. The `outpost` command
 * (`src/cli/main.ts`) is built on exactly these exports.
 *
 * @example
 * ```ts
 * import { Accounts, defaultFtpServerOptions, FtpServer, hashPassword, READ_ONLY } from "./mod.ts";
 *
 * const accounts = new Accounts({
 *   users: [{ name: "pi", passwordHash: await hashPassword("secret"), root: "/srv/ftp", perms: READ_ONLY }],
 *   anonymous: null,
 * });
 * const server = new FtpServer({ ...defaultFtpServerOptions(accounts), hostname: "127.0.0.1", port: 2121 });
 * await server.listen();
 * ```
 *
 * @module
 */

// Shared line and connection I/O.
export { closeQuietly, writeAll } from "./src/net/byte_conn.ts";
export type { ByteConn } from "./src/net/byte_conn.ts";
export { LineReader, LineTooLongError } from "./src/net/line_reader.ts";
export type { LineReaderOptions } from "./src/net/line_reader.ts";
export { formatLogLine, journalStreamMatches, Logger, setJournalMode, setLogSink } from "./src/log/logger.ts";
export type { LogSink, LogValue } from "./src/log/logger.ts";

// Config.
export { DEFAULT_CONFIG_PATHS, findConfigPath, loadConfig, parseConfig } from "./src/app/outpost_config.ts";
export type { AreaReader, DeviceConfig, OutpostConfig } from "./src/app/outpost_config.ts";
export { ConfigError, parseDuration, parseSize, Section } from "./src/config/section.ts";
export { checkPasswordHash, hashPassword, verifyPassword } from "./src/config/password.ts";

// FTP server.
export { defaultFtpServerOptions, FtpServer } from "./src/ftp/ftp_server.ts";
export type { FtpServerOptions, FtpServerStatus } from "./src/ftp/ftp_server.ts";
export { Accounts } from "./src/ftp/accounts.ts";
export type { AccountsOptions, FtpUser } from "./src/ftp/accounts.ts";
export {
  FtpFileSystem,
  FtpFsError,
  FULL_ACCESS,
  parsePermissions,
  READ_ONLY,
} from "./src/ftp/ftp_file_system.ts";
export type { FtpFileInfo, FtpFsErrorCode, FtpPermissions, FtpUpload } from "./src/ftp/ftp_file_system.ts";
export type { FtpFile } from "./src/ftp/fd_file.ts";
export type { FtpTlsOptions } from "./src/ftp/ftps.ts";
export { readFtpConfig } from "./src/ftp/ftp_config.ts";
export { certificateFingerprint, ensureCertificate } from "./src/net/certificate.ts";
export type { CertificatePaths, EnsuredCertificate } from "./src/net/certificate.ts";

// SMTP client, messages and the durable outbox.
export { deliver, SmtpClient, SmtpError } from "./src/smtp/smtp_client.ts";
export type {
  DeliveryResult,
  MessageSource,
  SmtpClientOptions,
  SmtpReply,
  SmtpSecurity,
  SmtpStage,
} from "./src/smtp/smtp_client.ts";
export type { SmtpTlsOptions } from "./src/smtp/smtp_socket.ts";
export type { ByteSink, DataWriter, DataWriterOptions } from "./src/smtp/dot_stuffing.ts";
export { HeaderInjectionError, prepareMessage } from "./src/smtp/mail_message.ts";
export type {
  MailAttachment,
  MailMessage,
  MessageDefaults,
  PreparedMessage,
} from "./src/smtp/mail_message.ts";
export { Outbox, OutboxFullError } from "./src/smtp/outbox.ts";
export type { OutboxEntry, OutboxOptions, QueueMeta } from "./src/smtp/outbox.ts";
export { DeliveryWorker } from "./src/smtp/delivery_worker.ts";
export type { DeliveryWorkerOptions, WorkerStatus } from "./src/smtp/delivery_worker.ts";
export { mailPaths, readOutboxConfig, readSmtpConfig, resolveRecipient } from "./src/smtp/smtp_config.ts";
export type { MailPaths } from "./src/smtp/smtp_config.ts";
export {
  MaildropUnavailableError,
  MessageTooLargeError,
  STALE_DROP_MS,
  submitToMaildrop,
} from "./src/smtp/maildrop.ts";
export type { DropMeta, SubmitOptions } from "./src/smtp/maildrop.ts";
export { hasLongLines, SevenBitWriter } from "./src/smtp/seven_bit.ts";
export { outboxAlertMailer, queueFallbackConfigNotice } from "./src/alerts/outbox_mailer.ts";
export { renderDigestMail, renderFallbackConfigMail } from "./src/alerts/templates.ts";
export type { DigestInput, FallbackConfigInput } from "./src/alerts/templates.ts";

// Alerts.
export { AlertMonitor } from "./src/alerts/monitor.ts";
export type {
  AlertMailer,
  AlertMonitorOptions,
  MonitorStatus,
  RuleStatus,
  SensorStatus,
} from "./src/alerts/monitor.ts";
export { readAlertsConfig, SENSOR_TYPES } from "./src/alerts/alerts_config.ts";
export type {
  AlertsConfig,
  ReadAlertsOptions,
  RuleConfig,
  SensorConfig,
  SensorType,
} from "./src/alerts/alerts_config.ts";
export type { AlertState, AlertStateStore, DigestState } from "./src/alerts/alert_state.ts";
export { discoverSensors } from "./src/alerts/sensor_discovery.ts";
export type { DiscoveredSensor } from "./src/alerts/sensor_discovery.ts";
export { stepRule } from "./src/alerts/rule_engine.ts";
export type {
  AlertEvent,
  RuleSpec,
  RuleState,
  RuleStep,
  RuleWindow,
  Sample,
  SensorHealthState,
  Severity,
} from "./src/alerts/rule_engine.ts";
export { THROTTLE_BITS } from "./src/alerts/sensor_readers.ts";
export type { FileFingerprint, ThrottleFlag } from "./src/alerts/sensor_readers.ts";
export type { MailTemplates } from "./src/alerts/templates.ts";
export { loadBoardProfile, renderBoardConfig } from "./src/alerts/board_profiles.ts";
export type { BoardProfile } from "./src/alerts/board_profiles.ts";

// The daemon.
export { OutpostDaemon } from "./src/daemon/outpost_daemon.ts";
export { SystemdNotifier } from "./src/daemon/systemd_notify.ts";

// Status: the socket `outpost status` asks, the status page and /metrics.
export { isLoopbackHost, readStatusConfig } from "./src/status/status_config.ts";
export type { StatusConfig } from "./src/status/status_config.ts";
export { StatusService } from "./src/status/status_service.ts";
export { StatusHttp } from "./src/status/status_http.ts";
export type { StatusHttpDeps } from "./src/status/status_http.ts";
export { collectStatus, OUTPOST_VERSION } from "./src/status/status_snapshot.ts";
export type {
  ConfigState,
  StatusConfigView,
  StatusSnapshot,
  StatusSource,
} from "./src/status/status_snapshot.ts";
export { queryStatus, StatusQueryError } from "./src/status/query_status.ts";
export { SensorHistory } from "./src/status/sensor_history.ts";
export type { HistoryPoint, SavedHistory } from "./src/status/sensor_history.ts";
export { formatMetrics, METRICS_CONTENT_TYPE } from "./src/status/prometheus_metrics.ts";
export { escapeHtml, renderStatusPage, sensorChart } from "./src/status/status_page.ts";
export {
  formatBytes,
  formatLocalTime,
  formatStatusText,
  ruleStateText,
  sensorReading,
} from "./src/status/status_text.ts";
export { StatusSocket } from "./src/status/status_socket.ts";
