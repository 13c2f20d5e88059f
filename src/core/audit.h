/* core/audit.h — the append-only, hash-chained audit log (docs/AUDIT.md).
 *
 * Owns: one open segment file per pipeline under <state_dir>/audit/ (plus "odsync-process" for
 * records of no pipeline), their chain state (sequence number, last hash), the head files written
 * at fsync points, and the process-wide audit settings. Every record is one JSON line:
 *   {"seq":N,"time":"...Z","pipeline":"P","kind":"K",<fields>,"prev":"<sha256 hex>","hash":"<sha256 hex>"}
 * where hash = SHA-256 of the line's bytes before ,"hash": and prev is the previous record's hash
 * (64 zeros for the first record ever). Never touches: sinks, sources, secrets (callers pass no
 * secret values; the log holds positions, names, counts and hashes only).
 *
 * Thread-safety: every function may be called from any thread at any time; before od_audit_init
 * (unit tests, `odsync check`) or with `audit: { enabled: false }` the record calls do nothing.
 */
#ifndef ODSYNC_CORE_AUDIT_H
#define ODSYNC_CORE_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/sqlbuf.h"
#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"
#include "odsync/position.h"

/* Start auditing with the root config's audit settings (cmd_run, before any pipeline starts).
 * Creates <state_dir>/audit; computes the config hash (SHA-256 of the config file's bytes). */
int od_audit_init(const od_config *root, od_error *err);
/* fsync every open log, write its head file, close it; later record calls do nothing. */
void od_audit_shutdown(void);
bool od_audit_enabled(void);
/* The config file's SHA-256 (hex), "" when auditing is off. */
const char *od_audit_config_hash(void);
/* SHA-256 (hex) of a file's bytes into out ("unknown" when it cannot be read). */
void od_audit_file_hash(const char *path, char out[65]);
/* A config reload replaced the configuration: later batch records carry this hash. */
void od_audit_set_config_hash(const char *hash);

/* THE entry point for other parts (DLQ, conflicts, admin): append one record.
 * pipeline: a pipeline name, or NULL for the process log. kind: a short word ([a-z_]+, e.g.
 * "dlq_replay", "conflict", "admin_request"). json_fields: NULL or JSON object members without the
 * braces ("\"sink\":\"a\",\"rows\":3"); a newline in it is replaced by a space. Must hold no secret.
 * Returns OD_OK, or a status when the record could not be written (also logged once per log). */
int od_audit_record(const char *pipeline, const char *kind, const char *json_fields);

/* Appends v as a JSON string (quoted, escaped) to b; NULL becomes null. */
void od_audit_json_str(od_sqlbuf *b, const char *v);

/* Rows per table of one batch (filled by the apply thread, per batch, never per row on disk). */
#define OD_AUDIT_TALLY_MAX 32
/* Correlation ids (sources that carry them: the HTTP ingest) listed per batch record, at most: */
#define OD_AUDIT_CIDS_MAX 1000
typedef struct od_audit_tally {
  const od_relation *rel[OD_AUDIT_TALLY_MAX]; /* borrowed: valid until the batch is committed */
  uint64_t rows[OD_AUDIT_TALLY_MAX];
  int n;
  uint64_t other; /* rows of tables beyond the cap */
  od_sqlbuf cids;  /* owned: the batch's correlation ids as JSON strings, comma-separated (one per event) */
  uint64_t ncids;  /* ids seen in the batch (also those beyond OD_AUDIT_CIDS_MAX) */
  uint64_t listed; /* ids in cids */
} od_audit_tally;
void od_audit_tally_add(od_audit_tally *t, const od_change *ch, size_t n);
/* Forget the batch (rolled back or recorded); keeps the id buffer's memory. */
void od_audit_tally_reset(od_audit_tally *t);
void od_audit_tally_free(od_audit_tally *t);

/* One applied batch, after the sink's commit: positions (from, to], counts, the tables, the id of
 * the transform set of that sink and the config hash. Resets the tally. */
void od_audit_batch(const char *pipeline, const char *sink, const char *transforms_id, const od_pos *from,
                    const od_pos *to, uint64_t rows, uint64_t txns, od_audit_tally *tally);

/* A session starts on a sink whose checkpoint is `checkpoint`: records it with the sink's
 * transform set (transforms_json: a JSON array) and, when the log's last known position of that
 * sink differs (records lost in a crash before their fsync), a "gap" record naming both. */
void od_audit_session(const char *pipeline, const char *sink, const od_pos *checkpoint, const char *transforms_id,
                      const char *transforms_json);
/* A position the sink reached outside of batches (its initial snapshot). */
void od_audit_position(const char *pipeline, const char *sink, const char *kind, const od_pos *pos);

/* `odsync audit verify`: check the chain of one pipeline's log (every segment, in order) and its
 * head file. Prints a line per problem and a summary to out; returns the number of problems
 * (0: intact), or -1 when the log cannot be read (err filled). */
int od_audit_verify(const char *state_dir, const char *pipeline, FILE *out, od_error *err);
/* `odsync audit find ID`: prints to out every batch record of pipeline's log (all its segments, oldest
 * first) whose correlation_ids hold `correlation_id`. Returns the number printed, or -1 (err filled)
 * when the log cannot be read. */
int od_audit_find(const char *state_dir, const char *pipeline, const char *correlation_id, FILE *out, od_error *err);

#endif
