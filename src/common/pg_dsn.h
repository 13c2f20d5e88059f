/* pg_dsn.h — naming a PostgreSQL server from a libpq connection string without its secrets.
 * Shared by the PostgreSQL source and sink. Owns nothing; never connects. */
#ifndef ODSYNC_PG_DSN_H
#define ODSYNC_PG_DSN_H

#include <stddef.h>

#include "odsync/config.h"
#include "odsync/error.h"

/* Write "host:port/dbname" for `dsn` (the value of `cfg`'s "dsn" key) into out. A DSN libpq cannot
 * parse is an OD_ECONFIG error at the key's FILE:LINE:COL; libpq's explanation is included only
 * when the value holds no ${env:}/${file:} secret (it may quote part of the string). */
int od_pg_dsn_describe(const od_config_section *cfg, const char *dsn, char *out, size_t size, od_error *err);

#endif
