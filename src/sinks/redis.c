/* sinks/redis.c — the Redis sink (type "redis"; hiredis' protocol pieces over redis_conn.c, plain
 * TCP or TLS).
 *
 * Owns: the connection (AUTH with an ACL user and password, SELECT db), the batch — every command
 * of a sink transaction is pipelined inside one MULTI ... EXEC that also writes the checkpoint —
 * and the two bookkeeping hashes: <prefix>:_odsync:checkpoint (field = the checkpoint's name,
 * "<pipeline>" or "<pipeline>.<sink>"; value = the position's text form, e.g. "pg:0/16B3748")
 * and <prefix>:_odsync:marks (snapshot marks: "i:<integer>" or "t:<text>"). EXEC applies all of it or nothing, so data and
 * checkpoint are atomic (as durable as the server's AOF/RDB settings make them).
 *
 * Never touches: the source, acknowledgements, retries (errors say whether they are retriable),
 * process exit. Change memory is borrowed for the length of apply(); the password is never
 * logged or put into an error.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/log.h"
#include "sinks/redis_conn.h"
#include "sinks/redis_internal.h"

extern const od_sink_ops od_sink_redis;

#define RD_FLUSH_BYTES (1u << 20) /* write the pipelined commands out once this much is buffered */

static int conn_fail(rd_sink *s, const char *what, od_error *err) {
  char msg[300];
  snprintf(msg, sizeof msg, "%s", rd_conn_errstr(s->ctx));
  rd_conn_free(s->ctx);
  s->ctx = NULL;
  s->in_txn = false;
  return OD_FAIL_RETRY(err, OD_ECONNECT, "redis sink %s: %s: %s", s->name, what, msg);
}

/* One synchronous command outside a batch; *out is the reply (free it), errors become od_error. */
static int command(rd_sink *s, int argc, const char **argv, const size_t *len, const char *what, redisReply **out,
                   od_error *err) {
  redisReply *r = rd_conn_command(s->ctx, argc, argv, len);
  if (!r) return conn_fail(s, what, err);
  if (r->type == REDIS_REPLY_ERROR) {
    bool auth = !strncmp(r->str, "WRONGPASS", 9) || !strncmp(r->str, "NOAUTH", 6) || !strncmp(r->str, "NOPERM", 6);
    int rc = od_error_set(err, auth ? OD_ECONNECT : OD_ESINK, !strncmp(r->str, "LOADING", 7) || !strncmp(r->str, "BUSY", 4),
                          __FILE__, __LINE__, "redis sink %s: %s: %.200s", s->name, what, r->str);
    freeReplyObject(r);
    return rc;
  }
  if (out)
    *out = r;
  else
    freeReplyObject(r);
  return OD_OK;
}

static int connect_server(rd_sink *s, od_error *err) {
  char why[300];
  rd_tls tls = {.ca_file = s->tls_ca_file, .cert_file = s->tls_cert_file, .key_file = s->tls_key_file,
                .server_name = s->tls_server_name};
  s->ctx = rd_conn_open(s->host, s->port, s->timeout_ms, s->tls ? &tls : NULL, why, sizeof why);
  if (!s->ctx)
    return OD_FAIL_RETRY(err, OD_ECONNECT, "redis sink %s: connecting%s: %s%s", s->name, s->tls ? " over TLS" : "",
                         why, s->tls && strstr(why, "certificate verify failed")
                                  ? " (check tls_ca_file, and tls_server_name against the certificate's names)" : "");
  int rc = OD_OK;
  if (s->password) {
    const char *argv[3] = {"AUTH", s->user ? s->user : s->password, s->password};
    size_t len[3] = {4, strlen(argv[1]), strlen(s->password)};
    char what[200];
    snprintf(what, sizeof what, "authenticating as %s", s->user ? s->user : "the default user");
    rc = command(s, s->user ? 3 : 2, argv, len, what, NULL, err);
  }
  /* A TLS-only port drops (or never answers) a plain connection's first command: say so. */
  if (rc && !s->tls && !s->ctx)
    od_error_prefix(err, "redis sink %s: no answer to the first command; if this port speaks TLS (redis "
                    "tls-port), set tls: true on the sink: ", s->name);
  /* With TLS 1.3 a server that wants a client certificate may drop the connection after the
   * handshake, before its alert is read. */
  else if (rc && s->tls && !s->ctx && !s->tls_cert_file && !strstr(err->msg, "certificate required"))
    od_error_prefix(err, "redis sink %s: the server dropped the TLS connection at the first command; if it "
                    "requires client certificates (tls-auth-clients), set tls_cert_file and tls_key_file: ", s->name);
  if (!rc && s->db) {
    char db[16];
    snprintf(db, sizeof db, "%d", s->db);
    const char *argv[2] = {"SELECT", db};
    size_t len[2] = {6, strlen(db)};
    rc = command(s, 2, argv, len, "selecting the database", NULL, err);
  }
  if (rc && s->ctx) {
    rd_conn_free(s->ctx);
    s->ctx = NULL;
  }
  return rc;
}

/* ---- open / close -------------------------------------------------------------------------- */

static void rd_close(od_sink *base) {
  rd_sink *s = (rd_sink *)base;
  if (!s) return;
  rd_conn_free(s->ctx);
  if (s->duplicates) od_info("redis sink %s: %llu stream entries were already present (replayed)", s->name,
                             (unsigned long long)s->duplicates);
  for (int i = 0; i < s->nmodes; i++) free(s->modes[i].table);
  free(s->modes);
  free(s->host);
  free(s->user);
  if (s->password) memset(s->password, 0, strlen(s->password));
  free(s->password);
  free(s->tls_ca_file);
  free(s->tls_cert_file);
  free(s->tls_key_file);
  free(s->tls_server_name);
  free(s->prefix);
  free(s->ckname);
  od_sqlbuf_free(&s->key);
  od_sqlbuf_free(&s->val);
  od_sqlbuf_free(&s->aux);
  free(s);
}

static int parse_mode(const char *m) {
  if (!strcmp(m, "hash")) return RD_HASH;
  if (!strcmp(m, "json")) return RD_JSON;
  if (!strcmp(m, "invalidate")) return RD_INVALIDATE;
  if (!strcmp(m, "stream")) return RD_STREAM;
  return -1;
}

static int config_error(const od_config_section *cfg, const char *key, const char *what, od_error *err) {
  return od_config_fail_key(cfg, key, err, ".%s: %s", key, what);
}

static int rd_open(const od_config_section *cfg, const char *ckname, od_sink **out, od_error *err) {
  static const char *const keys[] = {"host", "port", "user", "password", "db", "prefix", "mode", "modes",
                                     "ttl_seconds", "stream_maxlen", "timeout_ms", "tls", "tls_ca_file",
                                     "tls_cert_file", "tls_key_file", "tls_server_name", NULL};
  const char *host, *user, *password, *prefix, *mode, *ca_file, *cert_file, *key_file, *server_name;
  bool tls;
  long port, db, ttl, maxlen, timeout_ms;
  char *const *modes = NULL;
  int nmodes = 0;
  int rc = od_config_check_keys(cfg, keys, err);
  if (!rc) rc = od_config_string(cfg, "host", "127.0.0.1", &host, err);
  if (!rc) rc = od_config_int(cfg, "port", 6379, 1, 65535, &port, err);
  if (!rc) rc = od_config_string(cfg, "user", NULL, &user, err);
  if (!rc) rc = od_config_string(cfg, "password", NULL, &password, err);
  if (!rc) rc = od_config_int(cfg, "db", 0, 0, 1000000, &db, err);
  if (!rc) rc = od_config_string(cfg, "prefix", "odsync", &prefix, err);
  if (!rc) rc = od_config_string(cfg, "mode", "hash", &mode, err);
  if (!rc) rc = od_config_list(cfg, "modes", &modes, &nmodes, err);
  if (!rc) rc = od_config_int(cfg, "ttl_seconds", 0, 0, 100000000, &ttl, err);
  if (!rc) rc = od_config_int(cfg, "stream_maxlen", 1000000, 1, 1000000000000L, &maxlen, err);
  if (!rc) rc = od_config_int(cfg, "timeout_ms", 30000, 100, 3600000, &timeout_ms, err);
  if (!rc) rc = od_config_bool(cfg, "tls", false, &tls, err);
  if (!rc) rc = od_config_string(cfg, "tls_ca_file", NULL, &ca_file, err);
  if (!rc) rc = od_config_string(cfg, "tls_cert_file", NULL, &cert_file, err);
  if (!rc) rc = od_config_string(cfg, "tls_key_file", NULL, &key_file, err);
  if (!rc) rc = od_config_string(cfg, "tls_server_name", NULL, &server_name, err);
  if (rc) return rc;
  if (!tls && (ca_file || cert_file || key_file || server_name))
    return config_error(cfg, ca_file ? "tls_ca_file" : cert_file ? "tls_cert_file" : key_file ? "tls_key_file" : "tls_server_name",
                        "is set but tls is not: add tls: true (or remove the tls_* keys)", err);
  if (tls && !cert_file != !key_file)
    return config_error(cfg, cert_file ? "tls_cert_file" : "tls_key_file",
                        "a client certificate needs both tls_cert_file and tls_key_file", err);
  if (parse_mode(mode) < 0) return config_error(cfg, "mode", "expected hash, json, invalidate or stream", err);
  if (user && !password) return config_error(cfg, "user", "a user needs a password (key password)", err);
  if (!*prefix || strchr(prefix, ' ')) return config_error(cfg, "prefix", "must be non-empty, without spaces", err);
  rd_sink *s = calloc(1, sizeof *s);
  if (!s) return OD_FAIL(err, OD_ENOMEM, "redis sink: out of memory");
  s->base.ops = &od_sink_redis;
  s->host = strdup(host);
  s->port = (int)port;
  s->user = user ? strdup(user) : NULL;
  s->password = password ? strdup(password) : NULL;
  s->db = (int)db;
  s->prefix = strdup(prefix);
  s->ckname = strdup(ckname ? ckname : "");
  s->default_mode = parse_mode(mode);
  s->ttl_seconds = ttl;
  s->stream_maxlen = maxlen;
  s->timeout_ms = timeout_ms;
  s->tls = tls;
  s->tls_ca_file = ca_file ? strdup(ca_file) : NULL;
  s->tls_cert_file = cert_file ? strdup(cert_file) : NULL;
  s->tls_key_file = key_file ? strdup(key_file) : NULL;
  s->tls_server_name = server_name ? strdup(server_name) : NULL;
  snprintf(s->name, sizeof s->name, "%.200s:%d/%d", host, (int)port, (int)db);
  s->modes = calloc((size_t)nmodes + 1, sizeof *s->modes);
  if (!s->host || (user && !s->user) || (password && !s->password) || !s->prefix || !s->ckname || !s->modes ||
      (ca_file && !s->tls_ca_file) || (cert_file && !s->tls_cert_file) || (key_file && !s->tls_key_file) ||
      (server_name && !s->tls_server_name)) {
    rd_close(&s->base);
    return OD_FAIL(err, OD_ENOMEM, "redis sink: out of memory");
  }
  for (int i = 0; i < nmodes; i++) {
    const char *item = modes[i], *eq = strchr(item, '=');
    const char *dot = eq ? memchr(item, '.', (size_t)(eq - item)) : NULL;
    int m = eq ? parse_mode(eq + 1) : -1;
    if (!dot || dot == item || dot + 1 == eq || m < 0) {
      char what[300];
      snprintf(what, sizeof what, "entry %d '%.100s' must read schema.table=MODE, MODE one of hash, json, invalidate, "
               "stream", i, item);
      rd_close(&s->base);
      return config_error(cfg, "modes", what, err);
    }
    if (!(s->modes[i].table = strndup(item, (size_t)(eq - item)))) {
      rd_close(&s->base);
      return OD_FAIL(err, OD_ENOMEM, "redis sink: out of memory");
    }
    s->modes[i].mode = m;
    s->nmodes = i + 1;
  }
  if ((rc = connect_server(s, err))) {
    rd_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return OD_OK;
}

/* ---- bookkeeping keys ---------------------------------------------------------------------- */

static void ckpt_key(rd_sink *s, char *out, size_t n) { snprintf(out, n, "%s:_odsync:checkpoint", s->prefix); }
static void marks_key(rd_sink *s, char *out, size_t n) { snprintf(out, n, "%s:_odsync:marks", s->prefix); }

static int hget(rd_sink *s, const char *hash, const char *field, char **out, od_error *err) {
  *out = NULL;
  if (!s->ctx && connect_server(s, err)) return err->code;
  const char *argv[3] = {"HGET", hash, field};
  size_t len[3] = {4, strlen(hash), strlen(field)};
  redisReply *r = NULL;
  char what[400];
  snprintf(what, sizeof what, "reading %s field %s", hash, field);
  int rc = command(s, 3, argv, len, what, &r, err);
  if (rc) return rc;
  bool is_string = r->type == REDIS_REPLY_STRING;
  if (is_string && (*out = malloc(r->len + 1))) {
    memcpy(*out, r->str, r->len);
    (*out)[r->len] = '\0';
  }
  freeReplyObject(r);
  return is_string && !*out ? OD_FAIL(err, OD_ENOMEM, "redis sink: out of memory") : OD_OK;
}

/* ---- the batch ----------------------------------------------------------------------------- */

int rd_append(rd_sink *s, int argc, const char **argv, const size_t *argvlen, od_error *err) {
  if (rd_conn_append(s->ctx, argc, argv, argvlen)) return conn_fail(s, "queueing a command", err);
  s->queued++;
  if (rd_conn_pending(s->ctx) >= RD_FLUSH_BYTES && rd_conn_flush(s->ctx)) return conn_fail(s, "sending the batch", err);
  return OD_OK;
}

static int rd_read_position(od_sink *base, od_pos *out, od_error *err) {
  rd_sink *s = (rd_sink *)base;
  char key[300], *v = NULL;
  ckpt_key(s, key, sizeof key);
  int rc = hget(s, key, s->ckname, &v, err);
  if (rc) return rc;
  *out = od_pos_none();
  if (v && (rc = od_pos_from_text(v, out, err)))
    od_error_prefix(err, "redis sink %s: hash %s field %s: ", s->name, key, s->ckname);
  free(v);
  return rc;
}

static int rd_begin(od_sink *base, od_error *err) {
  rd_sink *s = (rd_sink *)base;
  if (s->in_txn) return OD_FAIL(err, OD_EINVAL, "redis sink %s: begin inside an open batch", s->name);
  if (!s->ctx && connect_server(s, err)) return err->code;
  const char *argv[1] = {"MULTI"};
  size_t len[1] = {5};
  s->queued = 0;
  int rc = rd_append(s, 1, argv, len, err);
  if (rc) return rc;
  s->queued = 0; /* MULTI's own reply is read separately */
  s->in_txn = true;
  return OD_OK;
}

static int rd_apply(od_sink *base, const od_change *changes, size_t n, od_error *err) {
  rd_sink *s = (rd_sink *)base;
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "redis sink %s: apply outside a batch", s->name);
  for (size_t i = 0; i < n; i++) {
    int rc = rd_apply_change(s, &changes[i], err);
    if (rc) return rc;
  }
  return OD_OK;
}

static bool is_replayed_entry(const redisReply *r) {
  return r->type == REDIS_REPLY_ERROR && strstr(r->str, "equal or smaller than the target stream top item");
}

static int commit_with(rd_sink *s, const od_pos *pos, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "redis sink %s: commit without begin", s->name);
  int rc;
  char key[300], text[OD_POS_TEXT_MAX];
  if (pos) {
    ckpt_key(s, key, sizeof key);
    od_pos_to_text(pos, text, sizeof text);
    const char *argv[4] = {"HSET", key, s->ckname, text};
    size_t len[4] = {4, strlen(key), strlen(s->ckname), strlen(text)};
    if ((rc = rd_append(s, 4, argv, len, err))) return rc;
  }
  const char *exec_argv[1] = {"EXEC"};
  size_t exec_len[1] = {4};
  size_t queued = s->queued;
  if (rd_conn_append(s->ctx, 1, exec_argv, exec_len)) return conn_fail(s, "sending EXEC", err);
  redisReply *r = NULL;
  /* MULTI's +OK, one +QUEUED (or an error) per command, then EXEC's array. */
  char first_err[240] = "";
  for (size_t i = 0; i < queued + 1; i++) {
    if (rd_conn_get_reply(s->ctx, &r)) return conn_fail(s, "reading the batch's replies", err);
    if (r->type == REDIS_REPLY_ERROR && !first_err[0]) snprintf(first_err, sizeof first_err, "%.200s", r->str);
    freeReplyObject(r);
  }
  if (rd_conn_get_reply(s->ctx, &r)) return conn_fail(s, "reading EXEC's reply", err);
  s->in_txn = false;
  if (r->type != REDIS_REPLY_ARRAY) {
    rc = OD_FAIL(err, OD_ESINK, "redis sink %s: the batch was not applied (EXEC: %.200s)%s%s", s->name,
                 r->type == REDIS_REPLY_ERROR ? r->str : "no result", first_err[0] ? "; first error: " : "", first_err);
    freeReplyObject(r);
    return rc;
  }
  rc = OD_OK;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i];
    if (is_replayed_entry(e)) {
      s->duplicates++;
      continue;
    }
    if (e->type == REDIS_REPLY_ERROR && !rc)
      /* EXEC ran every other command (Redis does not roll back): the checkpoint moved on with them. */
      rc = OD_FAIL(err, OD_ESINK, "redis sink %s: command %zu of the batch failed: %.200s (the rest of the batch and "
                   "its checkpoint were applied; fix the key, then re-copy the table with odsync snapshot)",
                   s->name, i + 1, e->str);
  }
  freeReplyObject(r);
  return rc;
}

static int rd_commit(od_sink *base, const od_pos *pos, od_error *err) { return commit_with((rd_sink *)base, pos, err); }
static int rd_commit_data(od_sink *base, od_error *err) { return commit_with((rd_sink *)base, NULL, err); }

static void rd_rollback(od_sink *base) {
  rd_sink *s = (rd_sink *)base;
  /* Unread replies of an open MULTI: dropping the connection discards the transaction. */
  if (s->in_txn && s->ctx) {
    rd_conn_free(s->ctx);
    s->ctx = NULL;
  }
  s->in_txn = false;
}

/* ---- marks --------------------------------------------------------------------------------- */

static int set_mark_value(rd_sink *s, const char *mkey, const char *value, od_error *err) {
  if (!s->in_txn) return OD_FAIL(err, OD_EINVAL, "redis sink %s: set_mark outside a batch", s->name);
  char key[300];
  marks_key(s, key, sizeof key);
  if (!value) {
    const char *argv[3] = {"HDEL", key, mkey};
    size_t len[3] = {4, strlen(key), strlen(mkey)};
    return rd_append(s, 3, argv, len, err);
  }
  const char *argv[4] = {"HSET", key, mkey, value};
  size_t len[4] = {4, strlen(key), strlen(mkey), strlen(value)};
  return rd_append(s, 4, argv, len, err);
}

static int rd_set_mark(od_sink *base, const char *key, uint64_t value, od_error *err) {
  char v[32];
  snprintf(v, sizeof v, "i:%llu", (unsigned long long)value);
  return set_mark_value((rd_sink *)base, key, value ? v : NULL, err);
}

static int rd_set_text_mark(od_sink *base, const char *key, const char *text, od_error *err) {
  rd_sink *s = (rd_sink *)base;
  if (!text) return set_mark_value(s, key, NULL, err);
  size_t n = strlen(text);
  char *v = malloc(n + 3);
  if (!v) return OD_FAIL(err, OD_ENOMEM, "redis sink: out of memory");
  memcpy(v, "t:", 2);
  memcpy(v + 2, text, n + 1);
  int rc = set_mark_value(s, key, v, err);
  free(v);
  return rc;
}

static int rd_get_mark(od_sink *base, const char *mkey, uint64_t *out, od_error *err) {
  rd_sink *s = (rd_sink *)base;
  char key[300], *v;
  marks_key(s, key, sizeof key);
  int rc = hget(s, key, mkey, &v, err);
  if (rc) return rc;
  *out = v && !strncmp(v, "i:", 2) ? strtoull(v + 2, NULL, 10) : 0;
  free(v);
  return OD_OK;
}

static int rd_get_text_mark(od_sink *base, const char *mkey, char **out, od_error *err) {
  rd_sink *s = (rd_sink *)base;
  char key[300], *v;
  marks_key(s, key, sizeof key);
  int rc = hget(s, key, mkey, &v, err);
  if (rc) return rc;
  *out = NULL;
  if (v && !strncmp(v, "t:", 2)) {
    memmove(v, v + 2, strlen(v + 2) + 1);
    *out = v;
  } else {
    free(v);
  }
  return OD_OK;
}

const od_sink_ops od_sink_redis = {
    .type = "redis",
    .caps = OD_SINK_ATOMIC_CHECKPOINT | OD_SINK_MARKS | OD_SINK_TEXT_MARKS, /* MULTI/EXEC */
    .max_writers = 1,
    .open = rd_open,
    .read_position = rd_read_position,
    .begin = rd_begin,
    .apply = rd_apply,
    .commit = rd_commit,
    .commit_data = rd_commit_data,
    .rollback = rd_rollback,
    .close = rd_close,
    .set_mark = rd_set_mark,
    .get_mark = rd_get_mark,
    .set_text_mark = rd_set_text_mark,
    .get_text_mark = rd_get_text_mark,
};
