/* sources/mysql/my_source.h — the mysql source's state, shared by mysql_source.c (the stream) and
 * my_snapshot.c (the initial snapshot). Internal.
 * Ownership: everything here is owned by the source and freed by its close(). */
#ifndef ODSYNC_MYSQL_SOURCE_H
#define ODSYNC_MYSQL_SOURCE_H

#include <mysql.h>
#include <mariadb_rpl.h>

#include "odsync/snapshot.h"
#include "odsync/source.h"
#include "sources/mysql/my_conn.h"
#include "sources/mysql/my_relcache.h"
#include "sources/mysql/my_stream.h"

typedef struct my_snap my_snap;

typedef struct my_source {
  od_source base;
  const char *pipeline;
  my_settings set;
  my_catalog *cat;
  MYSQL *conn;
  MARIADB_RPL *rpl;
  MARIADB_RPL_EVENT *ev;
  my_stream stream;
  bool stream_ready;
  const od_change_handler *outer;
  od_txn_info txn;
  od_pos resume; /* where start() connected */
  od_pos durable;
  my_snap *snap; /* the initial snapshot's view, tables and relations (my_snapshot.c) */
} my_source;

extern const od_snapshot_ops my_snapshot_ops;
void my_snap_free(my_source *s);

#endif
