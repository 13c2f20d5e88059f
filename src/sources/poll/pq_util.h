/* sources/poll/pq_util.h — what the query-based sources (postgres_poll, postgres_trigger) share over
 * an ordinary libpq connection: connecting with fixed text settings, running a statement with a
 * classified error, describing a captured table, and parsing a text[] literal.
 * Ownership: a pq_table owns its relation (columns and names) until pq_table_free; PGresults are
 * the caller's. Never touches: sinks, the pipeline, replication.
 */
#ifndef ODSYNC_POLL_PQ_UTIL_H
#define ODSYNC_POLL_PQ_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "odsync/change.h"
#include "odsync/config.h"
#include "odsync/error.h"

/* The session settings every value is read under (so text forms are stable). */
#define PQ_TEXT_FORM "DateStyle=ISO, MDY;IntervalStyle=postgres;TimeZone=UTC;extra_float_digits=3"

typedef struct pq_table {
  od_relation rel;   /* owned: schema, name, columns (names); rel.columns[i].key marks the primary key */
  char qname[400];   /* "schema"."table", quoted for SQL */
  char display[300]; /* schema.table */
  int nkey;
  int wm_col;        /* postgres_poll: the watermark column's index, -1 for xmin */
  int del_col;       /* postgres_poll: the soft-delete column's index, -1 when none */
  bool announced;    /* the relation was handed to the pipeline in this session */
} pq_table;

/* Connect to `dsn` (application_name odsync_<pipeline>) and set the text settings. A refused
 * login is fatal, an unreachable server retriable. */
int pq_connect(const char *dsn, const char *pipeline, const char *where, PGconn **out, od_error *err);

/* Run `sql` with text parameters; NULL on failure (err filled, retriable when the connection is
 * gone or the server asks to retry: SQLSTATE classes 08, 40, 53, 57). *res is the caller's. */
PGresult *pq_run(PGconn *c, const char *sql, int nparams, const char *const *params, const char *where,
                 od_error *err);
int pq_cmd(PGconn *c, const char *sql, const char *where, od_error *err);

/* Describe the table `name` ("schema.table" or "table" on the search path). Fails (not retriable)
 * when it does not exist or has no primary key. */
int pq_describe(PGconn *c, const char *name, pq_table *t, const char *where, od_error *err);
void pq_table_free(pq_table *t);
int pq_column(const pq_table *t, const char *name);

/* Quote an identifier into out ("a""b"). */
void pq_quote_ident(const char *id, char *out, size_t size);

/* Parse a one-dimensional text[] literal ({a,"b c",NULL}) in place into vals (pointers into s,
 * NULL for SQL NULL); returns the count, or -1 when malformed or more than max elements. */
int pq_parse_text_array(char *s, char **vals, int max);

#endif
