/* sources/mysql/my_conn.c — the mysql source's settings and client connections (see my_conn.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sources/mysql/my_conn.h"

static const char *const allowed_keys[] = {"dsn", "host", "port", "user", "password", "database", "server_id",
                                           "tables", "snapshot", "snapshot_chunk_rows", "heartbeat_ms",
                                           NULL};

static int at(const od_config_section *cfg, const char *key, int *line, int *col) {
  const od_config_entry *e = od_config_find(cfg, key);
  *line = e ? e->line : cfg->line;
  *col = e ? e->col : cfg->col;
  return 0;
}

static int copy_field(const od_config_section *cfg, const char *key, char *dst, size_t size, const char *v,
                      od_error *err) {
  if (strlen(v) >= size) {
    int l, c;
    at(cfg, key, &l, &c);
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.%s is too long (at most %zu characters)", cfg->file, l, c,
                   cfg->path, key, size - 1);
  }
  memcpy(dst, v, strlen(v) + 1);
  return OD_OK;
}

/* dsn: "host=... port=... user=... password=... dbname=..." (libpq's key=value form; values may be
 * 'single quoted'). */
static int parse_dsn(my_settings *s, const od_config_section *cfg, const char *dsn, od_error *err) {
  const od_config_entry *e = od_config_find(cfg, "dsn");
  int line = e ? e->line : cfg->line, col = e ? e->col : cfg->col;
  const char *p = dsn;
  while (*p) {
    while (isspace((unsigned char)*p)) p++;
    if (!*p) break;
    const char *k = p;
    while (*p && *p != '=' && !isspace((unsigned char)*p)) p++;
    size_t kl = (size_t)(p - k);
    while (isspace((unsigned char)*p)) p++;
    if (*p != '=' || kl == 0)
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.dsn is not a list of key=value settings (e.g. \"host=127.0.0.1 "
                     "port=3306 user=odsync password=${env:MYSQL_PW} dbname=shop\")", cfg->file, line, col, cfg->path);
    p++;
    while (isspace((unsigned char)*p)) p++;
    char val[512];
    size_t n = 0;
    if (*p == '\'') {
      for (p++; *p && *p != '\''; p++) {
        if (*p == '\\' && p[1]) p++;
        if (n + 1 < sizeof val) val[n++] = *p;
      }
      if (*p != '\'')
        return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.dsn has an unterminated quoted value", cfg->file, line, col,
                       cfg->path);
      p++;
    } else {
      while (*p && !isspace((unsigned char)*p)) {
        if (n + 1 < sizeof val) val[n++] = *p;
        p++;
      }
    }
    val[n] = '\0';
    int rc = OD_OK;
    if (kl == 4 && !strncmp(k, "host", 4)) rc = copy_field(cfg, "dsn", s->host, sizeof s->host, val, err);
    else if (kl == 4 && !strncmp(k, "port", 4)) s->port = (unsigned)strtoul(val, NULL, 10);
    else if (kl == 4 && !strncmp(k, "user", 4)) rc = copy_field(cfg, "dsn", s->user, sizeof s->user, val, err);
    else if (kl == 8 && !strncmp(k, "password", 8)) {
      free(s->password);
      if (!(s->password = strdup(val))) return OD_FAIL(err, OD_ENOMEM, "out of memory");
    } else if ((kl == 6 && !strncmp(k, "dbname", 6)) || (kl == 8 && !strncmp(k, "database", 8)))
      rc = copy_field(cfg, "dsn", s->database, sizeof s->database, val, err);
    else
      return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.dsn: unknown setting '%.*s' (known: host, port, user, password, "
                     "dbname)", cfg->file, line, col, cfg->path, (int)kl, k);
    if (rc) return rc;
  }
  return OD_OK;
}

int my_settings_load(my_settings *s, const od_config_section *cfg, const char *pipeline, od_error *err) {
  return my_settings_load_keys(s, cfg, pipeline, allowed_keys, err);
}

int my_settings_load_keys(my_settings *s, const od_config_section *cfg, const char *pipeline,
                          const char *const *keys, od_error *err) {
  memset(s, 0, sizeof *s);
  int rc = od_config_check_keys(cfg, keys, err);
  if (rc) return rc;
  const char *dsn, *host, *user, *password, *database, *snapshot;
  long port, server_id, hb, chunk_rows;
  /* A server id unique per pipeline unless set: replicas with the same id disconnect each other. */
  unsigned long h = 5381;
  for (const char *p = pipeline; *p; p++) h = h * 33 + (unsigned char)*p;
  if ((rc = od_config_string(cfg, "dsn", NULL, &dsn, err)) || (rc = od_config_string(cfg, "host", NULL, &host, err)) ||
      (rc = od_config_string(cfg, "user", NULL, &user, err)) ||
      (rc = od_config_string(cfg, "password", NULL, &password, err)) ||
      (rc = od_config_string(cfg, "database", NULL, &database, err)) ||
      (rc = od_config_int(cfg, "port", 0, 1, 65535, &port, err)) ||
      (rc = od_config_int(cfg, "server_id", (long)(100000 + h % 1000000000), 1, 4294967295L, &server_id, err)) ||
      (rc = od_config_int(cfg, "heartbeat_ms", 200, 10, 60000, &hb, err)) ||
      (rc = od_config_int(cfg, "snapshot_chunk_rows", 100000, 100, 100000000, &chunk_rows, err)) ||
      (rc = od_config_string(cfg, "snapshot", "initial", &snapshot, err)))
    goto fail;
  int line, col;
  if (dsn && (host || user || password || database || port)) {
    at(cfg, "dsn", &line, &col);
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: give either dsn or host/port/user/password/database, not both",
                 cfg->file, line, col, cfg->path);
    goto fail;
  }
  if (dsn && (rc = parse_dsn(s, cfg, dsn, err))) goto fail;
  if (host && (rc = copy_field(cfg, "host", s->host, sizeof s->host, host, err))) goto fail;
  if (user && (rc = copy_field(cfg, "user", s->user, sizeof s->user, user, err))) goto fail;
  if (database && (rc = copy_field(cfg, "database", s->database, sizeof s->database, database, err))) goto fail;
  if (password && !(s->password = strdup(password))) {
    rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
    goto fail;
  }
  if (port) s->port = (unsigned)port;
  if (!s->host[0]) snprintf(s->host, sizeof s->host, "127.0.0.1");
  if (!s->port) s->port = 3306;
  if (!s->user[0]) {
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: a user is required (user: or user= in dsn: a MariaDB account with "
                 "REPLICATION SLAVE, BINLOG MONITOR and SELECT)", cfg->file, cfg->line, cfg->col, cfg->path);
    goto fail;
  }
  if (strcmp(snapshot, "never") != 0 && strcmp(snapshot, "initial") != 0) {
    at(cfg, "snapshot", &line, &col);
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.snapshot '%s' must be initial or never", cfg->file, line, col,
                 cfg->path, snapshot);
    goto fail;
  }
  s->snapshot_initial = !strcmp(snapshot, "initial");
  s->snapshot_chunk_rows = (uint32_t)chunk_rows;
  s->server_id = (unsigned)server_id;
  s->heartbeat_ms = hb;
  char *const *tables;
  int n;
  if ((rc = od_config_list(cfg, "tables", &tables, &n, err))) goto fail;
  if (n == 0 && !s->database[0]) {
    rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s: give tables: [db.table, db.*, ...] or a database to capture all "
                 "its tables", cfg->file, cfg->line, cfg->col, cfg->path);
    goto fail;
  }
  s->tables = calloc((size_t)(n ? n : 1), sizeof *s->tables);
  if (!s->tables) goto oom;
  for (int i = 0; i < n; i++) {
    const char *t = tables[i];
    char buf[600];
    if (!strchr(t, '.')) {
      if (!s->database[0]) {
        at(cfg, "tables", &line, &col);
        rc = OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.tables: '%s' has no database (write db.%s, or set database)",
                     cfg->file, line, col, cfg->path, t, t);
        goto fail;
      }
      snprintf(buf, sizeof buf, "%s.%s", s->database, t);
      t = buf;
    }
    if (!(s->tables[s->ntables] = strdup(t))) goto oom;
    s->ntables++;
  }
  if (n == 0) {
    char buf[200];
    snprintf(buf, sizeof buf, "%s.*", s->database);
    if (!(s->tables[0] = strdup(buf))) goto oom;
    s->ntables = 1;
  }
  snprintf(s->where, sizeof s->where, "mysql %s:%u/%s", s->host, s->port, s->database[0] ? s->database : "(no db)");
  return OD_OK;
oom:
  rc = OD_FAIL(err, OD_ENOMEM, "out of memory");
fail:
  my_settings_free(s);
  return rc;
}

void my_settings_free(my_settings *s) {
  for (int i = 0; i < s->ntables; i++) free(s->tables[i]);
  free(s->tables);
  if (s->password) {
    memset(s->password, 0, strlen(s->password));
    free(s->password);
  }
  s->tables = NULL;
  s->password = NULL;
  s->ntables = 0;
}

int my_fail(const my_settings *s, MYSQL *m, const char *what, od_error *err) {
  unsigned e = m ? mysql_errno(m) : 0;
  /* 2006 server gone, 2013 lost connection, 2002/2003 cannot connect, 1927 connection killed */
  bool gone = e == 2006 || e == 2013 || e == 2002 || e == 2003 || e == 1927 || e == 2055;
  if (gone)
    return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: %s: %s", s->where, what, m ? mysql_error(m) : "out of memory");
  return OD_FAIL(err, OD_ESOURCE, "%s: %s: %s (error %u)", s->where, what, m ? mysql_error(m) : "out of memory", e);
}

int my_connect(const my_settings *s, MYSQL **out, od_error *err) {
  MYSQL *m = mysql_init(NULL);
  if (!m) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  unsigned connect_timeout = 10, read_timeout = 60, write_timeout = 60;
  mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
  mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &read_timeout);
  mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &write_timeout);
  mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  /* A binlog event (a row with a large BLOB) may be as large as the server allows: 1 GiB. */
  unsigned long max_packet = 1UL << 30;
  mysql_optionsv(m, MYSQL_OPT_MAX_ALLOWED_PACKET, &max_packet);
  if (!mysql_real_connect(m, s->host, s->user, s->password ? s->password : "", NULL, s->port, NULL, 0)) {
    unsigned e = mysql_errno(m);
    char msg[300];
    snprintf(msg, sizeof msg, "%s", mysql_error(m));
    mysql_close(m);
    if (e == 1045)
      return OD_FAIL(err, OD_ECONNECT, "%s: cannot connect as user %s: %s (check the user and password)", s->where,
                     s->user, msg);
    return OD_FAIL_RETRY(err, OD_ECONNECT, "%s: cannot connect: %s", s->where, msg);
  }
  int rc = my_exec(s, m, "SET time_zone = '+00:00', NAMES utf8mb4", err);
  if (rc) {
    mysql_close(m);
    return rc;
  }
  *out = m;
  return OD_OK;
}

int my_exec(const my_settings *s, MYSQL *m, const char *sql, od_error *err) {
  if (mysql_query(m, sql) != 0) {
    char what[160];
    snprintf(what, sizeof what, "%.120s", sql);
    return my_fail(s, m, what, err);
  }
  MYSQL_RES *r = mysql_store_result(m);
  mysql_free_result(r);
  return OD_OK;
}
