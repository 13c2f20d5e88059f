/* sources/mysql/my_relcache.h — odsync relations for MariaDB tables (internal; see my_relcache.c). */
#ifndef ODSYNC_MYSQL_RELCACHE_H
#define ODSYNC_MYSQL_RELCACHE_H

#include "odsync/change.h"
#include "sources/mysql/binlog.h"

typedef struct my_relcache my_relcache;

my_relcache *my_relcache_new(void);
void my_relcache_free(my_relcache *rc);
/* The current relation of t's table: the existing version when the shape is the same, else a new
 * version (*is_new: the caller announces it before any change uses it). t must be described
 * (every column named). */
int my_relcache_get(my_relcache *rc, const my_table *t, od_relation **out, bool *is_new, od_error *err);
/* The current version of db.name, or NULL. */
od_relation *my_relcache_find(my_relcache *rc, const char *db, const char *name);

#endif
