/* odsync/capture_admin.h — one-off administration of capture objects a source keeps in the source
 * database (the change table and triggers of `type: postgres_trigger`), for `odsync install-triggers`
 * and `odsync uninstall-triggers`.
 * Never touches: sinks, running pipelines.
 */
#ifndef ODSYNC_CAPTURE_ADMIN_H
#define ODSYNC_CAPTURE_ADMIN_H

#include <stdbool.h>

#include "odsync/config.h"
#include "odsync/error.h"

/* Install (or, with install false, remove) the trigger capture of one pipeline's source section
 * (type postgres_trigger): in one transaction of the source database. Installing is idempotent;
 * removing drops the triggers of the configured tables and the schema odsync with everything in it.
 * *summary (size bytes) receives a one-line description of what was done. */
int od_triggers_admin(const od_config_section *source, const char *pipeline, bool install, char *summary,
                      size_t size, od_error *err);
/* The same for a source of type mariadb_trigger (the database odsync and the row triggers, see
 * docs/adapters/mariadb_trigger.md). MariaDB cannot run DDL in a transaction: a failure part way
 * leaves what was done; running the command again completes it (every step is idempotent). */
int od_mytriggers_admin(const od_config_section *source, const char *pipeline, bool install, char *summary,
                        size_t size, od_error *err);

#endif
