// Every metric name, once. RustStrom's names, types, labels and buckets are
// kept so existing dashboards work; Strom's own start with `strom_`.

/** RustStrom's request-duration buckets, in seconds. */
export const DURATION_BUCKETS = [0.025, 0.05, 0.1, 0.5, 1, 2.5, 5, 10];

/** RustStrom's metrics. */
export const HTTP_REQUESTS_TOTAL = "http_requests_total";
export const ACTIVE_HTTP_CONNECTIONS = "active_http_connections";
export const HTTP_REQUEST_DURATION_SECONDS = "http_request_duration_seconds";
export const BACKEND_RESPONSE_TIME_SECONDS = "backend_response_time_seconds";
export const HTTP_STATUS_CODES_TOTAL = "http_status_codes_total";
export const HTTP_ERRORS_TOTAL = "http_errors_total";
export const HTTP_TIMEOUTS_TOTAL = "http_timeouts_total";
export const BACKEND_FAILURES_TOTAL = "backend_failures_total";
export const BYTES_TRANSFERRED_TOTAL = "bytes_transferred_total";

/**
 * Finer buckets for Strom's own latency histogram (the dashboard's p50/p99,
 * interpolated within a bucket): about 1.5x apart from 5 ms to 2.5 s, where
 * web backends answer. With 0.1 then 0.25, a backend answering in 120 ms was
 * shown at p50 175 ms and p99 248 ms (a probe). A request finds its bucket by a
 * scan from the smallest: the fast ones, below 5 ms, compare as before.
 */
export const FINE_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.0075,
  0.01,
  0.015,
  0.025,
  0.035,
  0.05,
  0.075,
  0.1,
  0.15,
  0.25,
  0.35,
  0.5,
  0.75,
  1,
  1.5,
  2.5,
  5,
  10,
];

/** Strom's metrics. */
export const REQUEST_DURATION_SECONDS = "strom_request_duration_seconds";
export const BACKEND_UP = "strom_backend_up";
export const BACKEND_AVAILABLE = "strom_backend_available";
export const BACKEND_STATE = "strom_backend_state";
export const BACKEND_IN_FLIGHT = "strom_backend_in_flight_requests";
export const BACKEND_REQUESTS_TOTAL = "strom_backend_requests_total";
export const BACKEND_EJECTED = "strom_backend_ejected";
export const BACKEND_EJECTED_IN_WORKERS = "strom_backend_ejected_in_workers";
export const EJECTIONS_TOTAL = "strom_backend_ejections_total";
export const HEALTH_CHECKS_TOTAL = "strom_health_checks_total";
export const RETRIES_TOTAL = "strom_retries_total";
export const RATE_LIMITED_TOTAL = "strom_rate_limited_requests_total";
export const CONFIG_RELOADS_TOTAL = "strom_config_reloads_total";
export const CONFIG_GENERATION = "strom_config_generation";
export const CERTIFICATE_EXPIRY_SECONDS = "strom_certificate_expiry_timestamp_seconds";
export const ACME_FAILURES_TOTAL = "strom_acme_failures_total";
export const WORKERS = "strom_workers";
export const WEBSOCKETS_OPEN = "strom_websockets_open";
export const CLIENT_CONNECTIONS = "strom_client_connections";
export const CLIENT_TIMEOUTS_TOTAL = "strom_client_timeouts_total";

/** The runtime's: how late each isolate's event loop runs. */
export const EVENT_LOOP_LAG_SECONDS = "deno_eventloop_lag_seconds";
