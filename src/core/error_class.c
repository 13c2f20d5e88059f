/* error_class.c — see core/error_class.h. The tables below are the whole policy: add a cause
 * here, nowhere else. */
#include "core/error_class.h"

#include <string.h>

/* SQLSTATE classes and codes (PostgreSQL appendix A). Longest match wins: a code before its
 * class. */
static const struct {
  const char *state; /* a 5-character code, or a 2/3-character prefix */
  od_error_class cls;
} SQLSTATES[] = {
    /* retriable: the server or the network, not the data */
    {"08", OD_ERRCLASS_RETRY},    /* connection exception */
    {"40001", OD_ERRCLASS_RETRY}, /* serialization_failure */
    {"40P01", OD_ERRCLASS_RETRY}, /* deadlock_detected */
    {"55P03", OD_ERRCLASS_RETRY}, /* lock_not_available (lock_timeout): sink busy */
    {"57014", OD_ERRCLASS_RETRY}, /* query_canceled (statement_timeout) */
    {"57P", OD_ERRCLASS_RETRY},   /* admin_shutdown 57P01, crash_shutdown, cannot_connect_now */
    {"53", OD_ERRCLASS_RETRY},    /* insufficient resources: disk_full 53100, out of memory, too_many_connections 53300 */
    {"58030", OD_ERRCLASS_RETRY}, /* io_error */
    {"XX001", OD_ERRCLASS_FATAL}, /* data_corrupted */
    /* fatal: configuration, permissions, missing objects */
    {"28", OD_ERRCLASS_FATAL},    /* invalid authorization: bad password, no pg_hba entry */
    {"3D000", OD_ERRCLASS_FATAL}, /* invalid_catalog_name: the database does not exist */
    {"42501", OD_ERRCLASS_FATAL}, /* insufficient_privilege */
    {"42704", OD_ERRCLASS_FATAL}, /* undefined_object: missing replication slot / publication */
    {"55000", OD_ERRCLASS_FATAL}, /* object_not_in_prerequisite_state: invalidated slot */
    {"0A", OD_ERRCLASS_FATAL},    /* feature_not_supported */
    {"42", OD_ERRCLASS_FATAL},    /* syntax error or access rule violation: incompatible schema */
    /* row: this change, not the sink */
    {"22", OD_ERRCLASS_ROW},      /* data exception: out of range, invalid text, bad encoding */
    {"23", OD_ERRCLASS_ROW},      /* integrity constraint violation: check, not null, unique, foreign key */
    {"P0001", OD_ERRCLASS_ROW},   /* raise_exception: a trigger that raises */
};

/* SQLite primary result codes (the low byte of an extended code). */
enum { SQ_PERM = 3, SQ_BUSY = 5, SQ_LOCKED = 6, SQ_IOERR = 10, SQ_CORRUPT = 11,
       SQ_FULL = 13, SQ_TOOBIG = 18, SQ_CONSTRAINT = 19, SQ_MISMATCH = 20, SQ_AUTH = 23,
       SQ_NOTADB = 26 };

static const struct {
  int code;
  od_error_class cls;
} SQLITE_CODES[] = {
    {SQ_BUSY, OD_ERRCLASS_RETRY},     {SQ_LOCKED, OD_ERRCLASS_RETRY},   {SQ_IOERR, OD_ERRCLASS_RETRY},
    {SQ_FULL, OD_ERRCLASS_RETRY},     {SQ_PERM, OD_ERRCLASS_FATAL},
    {SQ_AUTH, OD_ERRCLASS_FATAL},     {SQ_CORRUPT, OD_ERRCLASS_FATAL},  {SQ_NOTADB, OD_ERRCLASS_FATAL},
    {SQ_CONSTRAINT, OD_ERRCLASS_ROW}, {SQ_MISMATCH, OD_ERRCLASS_ROW},   {SQ_TOOBIG, OD_ERRCLASS_ROW},
};

od_error_class od_error_class_of_sqlstate(const char *st) {
  if (!st || strlen(st) != 5) return 0;
  size_t best = 0;
  od_error_class cls = 0;
  for (size_t i = 0; i < sizeof SQLSTATES / sizeof SQLSTATES[0]; i++) {
    size_t n = strlen(SQLSTATES[i].state);
    if (n > best && strncmp(st, SQLSTATES[i].state, n) == 0) {
      best = n;
      cls = SQLSTATES[i].cls;
    }
  }
  return cls;
}

od_error_class od_error_class_of_sqlite(int code) {
  int prim = code & 0xff;
  for (size_t i = 0; i < sizeof SQLITE_CODES / sizeof SQLITE_CODES[0]; i++)
    if (SQLITE_CODES[i].code == prim) return SQLITE_CODES[i].cls;
  return 0;
}

od_error_class od_error_classify(const od_error *err) {
  od_error_class cls = 0;
  if (err->sqlstate[0]) cls = od_error_class_of_sqlstate(err->sqlstate);
  else if (err->sqlite_code) cls = od_error_class_of_sqlite(err->sqlite_code);
  if (cls) return cls;
  /* No known cause: it means what its raiser said. */
  return err->retriable ? OD_ERRCLASS_RETRY : OD_ERRCLASS_FATAL;
}

const char *od_error_class_name(od_error_class c) {
  switch (c) {
    case OD_ERRCLASS_RETRY: return "retry";
    case OD_ERRCLASS_FATAL: return "fatal";
    case OD_ERRCLASS_ROW: return "row";
  }
  return "unknown";
}
