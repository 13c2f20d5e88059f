/* odsync/config.h — the parsed configuration file.
 *
 * Owns: the od_config tree and every string in it (freed by od_config_free). Secrets written as
 * ${env:NAME} or ${file:PATH} are resolved at load time; entries that contained one are marked
 * `secret` and their value must never be logged or put into an error message.
 * Source and sink sections are kept as generic key/value entries: each adapter validates its own
 * keys (od_config_check_keys) so a new adapter never needs a change here.
 * Never touches: servers, files other than the config and ${file:} references.
 */
#ifndef ODSYNC_CONFIG_H
#define ODSYNC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/error.h"

typedef struct od_config_entry {
  char *key;
  char *value;    /* scalar value with references resolved; NULL when the entry is a list */
  char **list;    /* sequence of scalars (e.g. tables: [a, b]); NULL when scalar */
  int nlist;
  bool secret;    /* value came (partly) from ${env:} or ${file:} */
  int line, col;  /* 1-based position of the value in the file */
  int *list_line, *list_col; /* list entries: the position of each item (nlist of each), else NULL */
} od_config_entry;

typedef struct od_config_section {
  const char *file;  /* config path (points into od_config) */
  const char *path;  /* dotted path for messages, e.g. "pipelines[0].source" */
  char *type;        /* required "type:" key */
  int line, col;
  od_config_entry *entries; /* every key except "type" */
  int nentries;
  /* The configuration's state_dir (points into od_config), for adapters that keep files of their
   * own there (the http source's journal); NULL in sections built outside od_config_load/parse. */
  const char *state_dir;
  /* The configuration's `encryption:` keys (points into od_config), for adapters that write row
   * data of their own under state_dir (the http source's journal, sealed with them); NULL as above. */
  const struct od_encryption_config *encryption;
} od_config_section;

/* What a reader of the sink may observe (see docs/CONSISTENCY.md). */
enum od_consistency {
  OD_CONSISTENCY_STRONG = 0,   /* default: whole source transactions, in commit order */
  OD_CONSISTENCY_CAUSAL = 1,   /* per-key order and write-set dependencies; independent groups in parallel */
  OD_CONSISTENCY_EVENTUAL = 2, /* per-key order; partitions in parallel; final state exact */
};

typedef struct od_batch_config {
  int max_rows;        /* default 5000, range 1..1000000 */
  size_t max_bytes;    /* default 64 MiB */
  int max_delay_ms;    /* default 20: longest a batch stays open while rows keep coming */
  bool adaptive;       /* default false: AIMD between min_rows and max_rows on sink latency */
  int min_rows;        /* default 100: the adaptive limit never goes below this */
  int target_latency_ms; /* default 50: a batch whose sink apply+commit takes longer halves the limit */
  int linger;          /* OD_LINGER_AUTO (default): as the sink asks (OD_SINK_LINGER); OD_LINGER_OFF: a
                          batch commits as soon as the queue runs empty; OD_LINGER_ON: it stays open
                          until max_rows, max_bytes or max_delay_ms */
  bool max_rows_set, max_delay_set; /* written in the config (else a lingering batch uses
                                       OD_LINGER_ROWS / OD_LINGER_DELAY_MS) */
} od_batch_config;
enum { OD_LINGER_AUTO = 0, OD_LINGER_OFF = 1, OD_LINGER_ON = 2 };
#define OD_LINGER_ROWS 100000   /* a lingering batch's max_rows when the config does not set it */
#define OD_LINGER_DELAY_MS 1000 /* and its max_delay_ms */

typedef struct od_queue_config {
  size_t max_rows;     /* default 100000 */
  size_t max_bytes;    /* default 256 MiB */
} od_queue_config;

/* What a pipeline does when the source's shape of a table changes (docs/SCHEMA.md). */
enum od_schema_policy {
  OD_SCHEMA_APPLY = 0,  /* default: carry the change to the sink (ADD/DROP/RENAME COLUMN, widening) */
  OD_SCHEMA_IGNORE = 1, /* the sink keeps the first shape; changes are mapped onto it */
  OD_SCHEMA_STOP = 2,   /* stop the pipeline with an error naming the table and the change */
};

/* SLA alerts of a pipeline (key `alerts:`); a threshold of 0 is off. */
typedef struct od_alerts_config {
  double lag_seconds;          /* firing while the lag is above this */
  double latency_p95_seconds;  /* firing while the end-to-end p95 of the last minute is above this */
  double errors_per_minute;    /* firing while more errors than this ended sessions in the last minute */
  bool anomalies;              /* default true: EWMA 3-sigma bands on throughput and lag */
  char *webhook;               /* POSTed a JSON object on every transition; NULL: none */
  bool webhook_secret;         /* the URL came from ${env:}/${file:}: never shown */
  int line, col;
} od_alerts_config;

/* A list of transforms (`transforms:`), each a section: `type:` (drop_columns, ...) and its keys. */
typedef struct od_transform_list {
  od_config_section *items;
  int n;
} od_transform_list;

/* PII checks of a pipeline (key `pii:`; docs/PII.md). */
enum od_pii_mode {
  OD_PII_OFF = 0,     /* default */
  OD_PII_WARN = 1,    /* a column that looks like PII and reaches a sink unmasked is logged (and audited) */
  OD_PII_ENFORCE = 2, /* ...and stops the pipeline (not retried) */
};
typedef struct od_pii_config {
  int detect;         /* enum od_pii_mode; key `detect: off|warn|enforce` */
  int sample;         /* values checked per new column (default 64, 1..100000) */
} od_pii_config;

/* One sink of a pipeline: `sink:` (one, named "default") or an item of `sinks:`. */
/* A sink's spool (docs/CONFIG.md `spool:`): used when the pipeline has several sinks. */
typedef struct od_spool_config {
  bool disabled;               /* `spool: false`: this sink holds the others back when it lags */
  unsigned long long max_bytes; /* default 1 GiB (1 MiB..16 TiB) */
  char *dir;                   /* default <state_dir>/spool; the spool is <dir>/<pipeline>.<sink> */
  int compression;             /* 0 none, 1 zstd (default), 2 lz4 */
} od_spool_config;

typedef struct od_sink_config {
  char *name;                 /* [A-Za-z0-9_]+, unique in the pipeline; "default" for `sink:` */
  od_config_section section;  /* type and the adapter's keys (name and transforms excluded) */
  od_transform_list transforms; /* this sink's own, applied after the pipeline's */
  od_spool_config spool;
} od_sink_config;

#define OD_SINKS_MAX 16

/* What a pipeline does with a change its sink rejects every time (key `on_poison`). */
enum od_poison_policy {
  OD_POISON_STOP = 0,        /* default: stop with an error naming the table, the key and the position */
  OD_POISON_DEAD_LETTER = 1, /* store it in the sink's _odsync_dead_letters and go on */
};

/* A sink's circuit breaker (key `circuit_breaker:`), see core/breaker.h. */
typedef struct od_breaker_config {
  int failures;          /* consecutive failures that open it (default 5; 1..1000) */
  double error_rate;     /* or this share of failed attempts in the window opens it (default 0.5; 0 off) */
  int min_attempts;      /* ... once the window holds at least this many attempts (default 10) */
  long window_ms;        /* the error-rate window (default 60000) */
  long cooldown_ms;      /* open this long before a half-open probe (default 30000) */
} od_breaker_config;

typedef struct od_pipeline_config {
  char *name;          /* [A-Za-z0-9_]+, unique */
  int line, col;
  char *path;          /* "pipelines[0]" */
  od_config_section source;
  od_sink_config *sinks; /* 1..OD_SINKS_MAX */
  int nsinks;
  od_transform_list transforms; /* applied for every sink, before the sink's own */
  long reconnect_max_ms; /* longest backoff between sessions (default 30000; 100..3600000); also
                            read from source.reconnect_max_ms, where earlier versions kept it */
  od_batch_config batch;
  od_queue_config queue;
  int schema_changes;  /* enum od_schema_policy; key `schema_changes: apply|ignore|stop` */
  int consistency;     /* enum od_consistency; key `consistency: strong|causal|eventual` */
  int apply_workers;   /* parallel sink writers under causal/eventual (1..64, default 4; capped by
                          what the sink supports: SQLite has one writer) */
  long apply_parallel_min_rows; /* under causal/eventual, a batch of fewer rows is applied by the
                                   carrier alone, in one sink transaction (0: never; default 256) */
  od_alerts_config alerts;
  int on_poison;       /* enum od_poison_policy; key `on_poison: stop|dead_letter` */
  int poison_attempts; /* tries of a rejected change before it is poison (1..100, default 3) */
  od_breaker_config breaker;
  od_pii_config pii;
} od_pipeline_config;

/* Roles of the admin API (docs/SECURITY.md); each includes the ones before it. */
enum od_admin_role { OD_ROLE_NONE = 0, OD_ROLE_VIEWER = 1, OD_ROLE_OPERATOR = 2, OD_ROLE_ADMIN = 3 };

/* A bearer token of `admin.tokens`. The value is a secret: zeroed by od_config_free, never shown. */
typedef struct od_admin_token {
  char *token;
  int role;            /* enum od_admin_role */
  int line, col;
} od_admin_token;

/* `admin.jwt`: JSON Web Tokens (HS256 with a shared secret, or RS256 with a public key file). */
typedef struct od_admin_jwt_config {
  bool enabled;
  bool rs256;          /* algorithm: RS256 (public_key) or HS256 (secret) */
  char *secret;        /* HS256 key (a secret: zeroed by od_config_free); NULL for RS256 */
  char *public_key;    /* RS256: path of a PEM public key; NULL for HS256 */
  char *audience;      /* required `aud` (string or list holding it); NULL: not checked */
  char *issuer;        /* required `iss`; NULL: not checked */
  char *role_claim;    /* claim naming the role; default "role" */
  int leeway_s;        /* clock skew allowed on exp/nbf; default 30 */
  int line, col;
} od_admin_jwt_config;

/* The admin HTTP server (metrics, health, status, dashboard); off when `admin:` is absent. */
typedef struct od_admin_config {
  bool enabled;
  char *listen;        /* as written, "127.0.0.1:7070" */
  char *host;          /* numeric address to bind: "127.0.0.1", "::1" ("localhost" becomes 127.0.0.1) */
  int port;            /* 1..65535 */
  int line, col;       /* of the listen value (of `admin:` when listen is absent) */
  bool loopback;       /* host is 127.0.0.0/8 or ::1: authentication optional */
  od_admin_token *tokens; /* `admin.tokens` (0..n) */
  int ntokens;
  od_admin_jwt_config jwt;
  char *tls_cert, *tls_key; /* `admin.tls: { cert, key }` PEM files: HTTPS; NULL: plain HTTP */
} od_admin_config;

/* OpenTelemetry traces (OTLP/HTTP JSON); off when `tracing:` is absent. */
typedef struct od_tracing_config {
  bool enabled;
  char *endpoint;      /* the OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces */
  bool endpoint_secret; /* it came from ${env:}/${file:}: never shown */
  double sample_ratio; /* share of batches traced, (0, 1]; default 0.01 */
  char *service_name;  /* resource attribute service.name; default "odsync" */
  int line, col;
} od_tracing_config;

/* `encryption:` — keys for encryption at rest (common/seal.h, docs/SECURITY.md). Each key is a
 * reference (${env:}/${file:}); the first seals new records, all of them open old ones. */
typedef struct od_encryption_key {
  char *id;            /* key id stored with every sealed record */
  char *key;           /* 64 hex digits or base64 of 32 bytes; a secret, zeroed by od_config_free */
  int line, col;
} od_encryption_key;

typedef struct od_encryption_config {
  od_encryption_key *keys; /* NULL when `encryption:` is absent */
  int nkeys;
} od_encryption_config;
/* The audit log (docs/AUDIT.md): one hash-chained file per pipeline under state_dir/audit. */
typedef struct od_audit_config {
  bool enabled;        /* default true; `audit: { enabled: false }` turns it off */
  size_t max_bytes;    /* a segment is rotated past this size (default 64 MiB, 64 KiB..16 GiB) */
  int fsync_ms;        /* records are fsynced at most this long after being written (default 1000; 0: every record) */
} od_audit_config;

typedef struct od_config {
  char *file;          /* path the config was read from ("<string>" for od_config_parse) */
  od_admin_config admin;
  od_encryption_config encryption;
  od_tracing_config tracing;
  od_audit_config audit;
  char *state_dir;     /* default "./odsync-state" */
  char *log_level;     /* error|warn|info|debug; default info (key log_level, or log.level) */
  char *log_format;    /* text|json; default text (key log.format) */
  od_pipeline_config *pipelines;
  int npipelines;
} od_config;

/* Read and validate a file. On error, err->msg reads "FILE:LINE:COL: what is wrong; what is expected". */
int od_config_load(const char *path, od_config **out, od_error *err);
/* Same, from a string; `name` is used as the file name in messages. */
int od_config_parse(const char *text, size_t len, const char *name, od_config **out, od_error *err);
void od_config_free(od_config *cfg);

/* Accessors for adapters. Each returns OD_OK, or OD_ECONFIG with "FILE:LINE:COL: <path>.<key> ..." */
const od_config_entry *od_config_find(const od_config_section *s, const char *key);
/* Scalar string; *out = def when the key is absent (def may be NULL). */
int od_config_string(const od_config_section *s, const char *key, const char *def, const char **out,
                     od_error *err);
int od_config_int(const od_config_section *s, const char *key, long def, long min, long max,
                  long *out, od_error *err);
int od_config_bool(const od_config_section *s, const char *key, bool def, bool *out, od_error *err);
/* List of strings; a scalar is taken as a one-element list. *n = 0 when absent. */
int od_config_list(const od_config_section *s, const char *key, char *const **out, int *n,
                   od_error *err);
/* Fail on the first key not in `allowed` (NULL-terminated), suggesting the closest allowed key. */
int od_config_check_keys(const od_config_section *s, const char *const *allowed, od_error *err);
/* An adapter's own finding about `key`: OD_ECONFIG with "FILE:LINE:COL: <path>" + the formatted
 * text, at the key's position (the section's when the key is absent or NULL). The text goes on
 * from the path: ".key 'v' must ...", or ": ..." for the section as a whole. */
__attribute__((format(printf, 4, 5))) int od_config_fail_key(const od_config_section *s, const char *key,
                                                             od_error *err, const char *fmt, ...);

/* Additions (config.c). Lists (entry.list) are also NULL-terminated.
 * Like od_config_string, but an absent key ("FILE:L:C: <path>: missing required key 'dsn'", at the
 * section's position) or an empty value is an error. */
int od_config_require_string(const od_config_section *s, const char *key, const char **out,
                             od_error *err);

#endif
