/* core/error_class.h — the one table that says what an error means for the pipeline.
 *
 * Owns: the classification of an od_error into retriable (the same work may succeed later: retry
 * with backoff), fatal (stop this pipeline with the error) and row (the sink rejected one change:
 * the poison-row policy isolates it, see core/poison.h). Classified once, from the cause a sink or
 * source put into the error (SQLSTATE, SQLite result code); an error without a known cause keeps
 * what its raiser said (od_error.retriable), so every existing error means what it meant.
 * Never touches: the error's text, logging, retries themselves.
 */
#ifndef ODSYNC_CORE_ERROR_CLASS_H
#define ODSYNC_CORE_ERROR_CLASS_H

#include "odsync/error.h"

typedef enum od_error_class {
  OD_ERRCLASS_RETRY = 1, /* retry with backoff */
  OD_ERRCLASS_FATAL = 2, /* stop the pipeline */
  OD_ERRCLASS_ROW = 3,   /* a row-level rejection by the sink (constraint, bad value, trigger) */
} od_error_class;

od_error_class od_error_classify(const od_error *err);
/* "retry", "fatal", "row". */
const char *od_error_class_name(od_error_class c);
/* What the table says about a cause alone; 0 when the table does not know it. Exposed for tests
 * and for `odsync dlq` (which prints the class of a stored code). */
od_error_class od_error_class_of_sqlstate(const char *sqlstate);
od_error_class od_error_class_of_sqlite(int sqlite_code);

#endif
