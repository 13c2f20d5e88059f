/* sinks/clickhouse_http.h — ClickHouse's HTTP interface through libcurl (private to the sink).
 *
 * Owns: one curl easy handle (kept alive between requests: one TCP connection), the credentials
 * (malloc'd copies; the password is a secret and is never logged or put in an error), the
 * response buffer, and the gzip buffer for compressed request bodies.
 * Every request's HTTP status is checked: ClickHouse answers a failed query (an insert whose data
 * does not parse, too) with a non-200 status and the exception text as the body.
 * Never touches: tables, rows, checkpoints — it runs the queries it is given.
 */
#ifndef ODSYNC_SINKS_CLICKHOUSE_HTTP_H
#define ODSYNC_SINKS_CLICKHOUSE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/sqlbuf.h"
#include "odsync/error.h"

typedef struct ch_http {
  void *curl;          /* CURL * */
  char *url;           /* http(s)://host:port/ (no credentials) */
  char *user, *password; /* owned; password secret */
  char *database;
  char *name;          /* "host:port/database", for messages */
  bool gzip;           /* compress request bodies (Content-Encoding: gzip) */
  long timeout_ms;
  od_sqlbuf resp;      /* body of the last response (NUL-terminated) */
  od_sqlbuf url_buf;   /* the URL of the current request */
  unsigned char *zbuf; /* compressed body */
  size_t zcap;
  char errbuf[256];
  unsigned long long requests, bytes_sent, bytes_raw;
} ch_http;

typedef struct ch_http_options {
  const char *url;      /* "http://127.0.0.1:8123" */
  const char *user;     /* may be NULL: "default" */
  const char *password; /* may be NULL */
  const char *database;
  bool gzip;
  long timeout_ms;
  bool tls_verify;
  const char *ca_file;  /* PEM CA bundle for https (a private CA); NULL: the system's */
} ch_http_options;

int ch_http_open(ch_http *h, const ch_http_options *opt, od_error *err);
void ch_http_close(ch_http *h);

/* Run one statement. Without `body`: the statement is the POST body. With `body` (len bytes): the
 * statement goes into the URL (an INSERT ... FORMAT ...) and `body` is its data (gzip'ed when
 * configured). The response is in h->resp. `what` names the operation (and its table) for the
 * message: "clickhouse sink host:port/db: <what>: HTTP 500: Code: 60, ...". Transport failures
 * and the server's transient exceptions are retriable; the rest are not. */
int ch_http_exec(ch_http *h, const char *stmt, const char *body, size_t len, const char *what, od_error *err);

#endif
