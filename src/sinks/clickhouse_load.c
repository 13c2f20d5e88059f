/* clickhouse_load.c — bulk loading of initial-snapshot chunks into ClickHouse (od_sink_ops.load_*).
 *
 * A chunk's rows are formatted straight into one TabSeparated buffer per table (ch_rel.bulk), each
 * line complete with its version and deleted flag; commit (or a batch over buffer_mib) sends the
 * buffer as it is, one INSERT per table per chunk. No per-row index, no superseding, no TOAST
 * filling: snapshot rows are whole rows, one per key, all of one version.
 *
 * Versions. A snapshot row's version is its change's (ch_row_version: 0 for the initial snapshot,
 * older than every streamed change), exactly what the apply() path gives it, so bulk-loaded rows
 * collapse with later stream changes of the same key under FINAL (the higher version wins).
 *
 * Duplicates (the contract's OD_EDUPLICATE). ClickHouse has no unique keys, so an INSERT never
 * fails on a key the table already holds, and this sink never returns OD_EDUPLICATE. It does not
 * need to: a row loaded twice (a chunk re-loaded after a crash between its INSERT and its mark)
 * carries the same key and the same version 0 with the same values, and ReplacingMergeTree keeps
 * one of them — idempotent. A row the table held before odsync (or from an earlier, abandoned
 * snapshot attempt, which the core truncates first) is a row of the same key whose version decides:
 * a streamed version (> 0) outlives a re-loaded snapshot row, as it should (it is newer).
 *
 * Keyless tables (clickhouse_keyless.c): each line carries the content hash, version 0, the
 * table's next snapshot sequence number and sign +1 instead of the deleted flag.
 *
 * Owns: ch_rel.bulk of the open batch. Never touches: marks, the checkpoint, the HTTP transport
 * (clickhouse_table.c sends the buffer).
 */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "sinks/clickhouse_internal.h"

int ch_load_prepare(od_sink *base, const od_relation *rel, const char *binary_format, bool *binary, od_error *err) {
  ch_sink *s = (ch_sink *)base;
  (void)binary_format; /* values are taken in text form: ClickHouse's TabSeparated is text */
  *binary = false;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "clickhouse sink %s: load_prepare outside a batch", s->http.name);
  ch_rel *r;
  int rc = ch_rel_get(s, rel, &r, err); /* creates or evolves the target table and its view */
  if (!rc)
    od_info("clickhouse sink %s: table %s: snapshot chunks load in bulk (one TabSeparated INSERT per chunk)",
            s->http.name, r->table);
  return rc;
}

int ch_load(od_sink *base, const od_change *rows, size_t n, od_error *err) {
  ch_sink *s = (ch_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "clickhouse sink %s: load outside a batch", s->http.name);
  if (!n) return OD_OK;
  ch_rel *r;
  uint64_t version;
  int rc = ch_rel_get(s, rows[0].rel, &r, err);
  if (!rc) rc = ch_row_version(s, &rows[0], &version, err); /* one version for the whole snapshot */
  if (rc) return rc;
  const od_relation *rel = r->rel;
  char tail[80];
  int tl = snprintf(tail, sizeof tail, "%llu\t0\n", (unsigned long long)version);
  ch_seq *seq = NULL; /* keyless tables: the running number of the table's snapshot rows */
  if (r->keyless && !(seq = ch_keyless_seq(s, r, err))) return OD_ENOMEM;
  od_value null = {.kind = OD_VALUE_NULL};
  od_sqlbuf *b = &r->bulk;
  for (size_t k = 0; k < n; k++) {
    const od_tuple *t = &rows[k].newtup;
    uint64_t h = CH_HASH_SEED;
    for (uint16_t i = 0; i < r->ncol; i++) {
      const od_value *v = i < t->ncolumns ? &t->values[i] : &null;
      const char *why = NULL;
      size_t at = b->len;
      if (ch_encode(b, r->kind[i], v, &why) != 0)
        return OD_FAIL(err, OD_ESINK, "clickhouse sink %s: table %s: column %s (%s): a snapshot value cannot be "
                       "stored: %s", s->http.name, r->table, rel->columns[i].name, rel->columns[i].type_name, why);
      if (seq && !b->oom) h = ch_hash_field(h, b->p + at, b->len - at); /* as ch_keyless_hash does */
      od_sqlbuf_addn(b, "\t", 1);
    }
    if (seq)
      tl = snprintf(tail, sizeof tail, "%llu\t%llu\t%llu\t1\n", (unsigned long long)h, (unsigned long long)version,
                    (unsigned long long)seq->next++);
    od_sqlbuf_addn(b, tail, (size_t)tl);
  }
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: out of memory", s->http.name);
  r->bulk_rows += n;
  /* A chunk larger than the batch buffer goes in as several INSERTs (each a complete set of
   * rows; a crash between them re-loads the chunk, which collapses). */
  if (r->bulk.len >= s->buffer_bytes) return ch_rel_flush(s, r, err);
  return OD_OK;
}

int ch_load_finish(od_sink *base, const od_relation *rel, od_error *err) {
  ch_sink *s = (ch_sink *)base;
  (void)rel; /* nothing was left out: ORDER BY is part of the MergeTree table from its creation */
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "clickhouse sink %s: load_finish outside a batch", s->http.name);
  return OD_OK;
}
