/* redis_modes.c — what one change becomes in Redis, per table mode (docs/adapters/redis.md):
 *
 *   hash        one hash per row at <prefix>:<table>:<key>: fields = columns (text form), NULL
 *               = no field; unchanged TOAST values are simply not written, so the stored field
 *               stays; a key change moves the hash (COPY + DEL); delete = DEL; optional EXPIRE
 *   json        one string per row holding a JSON object; delete = DEL; optional EX
 *   invalidate  DEL of the row's key (old and new) on every change
 *   stream      XADD <prefix>:<table> MAXLEN ~ n <id> op <op> <column> <value> ...; the entry id
 *               comes from the source position (rd_entry_id), so a replayed entry is rejected
 *
 * Owns: nothing (formats commands into the connection through rd_append).
 * Never touches: the connection's life, the checkpoint.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pg_types.h"
#include "sinks/redis_internal.h"

void rd_table_name(const od_relation *rel, od_sqlbuf *out) {
  if (rel->schema && *rel->schema && strcmp(rel->schema, "public") != 0) od_sqlbuf_addf(out, "%s.", rel->schema);
  od_sqlbuf_add(out, rel->name);
}

int rd_mode_of(const rd_sink *s, const od_relation *rel) {
  for (int i = 0; i < s->nmodes; i++) {
    const char *t = s->modes[i].table, *dot = strchr(t, '.');
    if (dot && (size_t)(dot - t) == strlen(rel->schema) && !strncmp(t, rel->schema, (size_t)(dot - t)) &&
        !strcmp(dot + 1, rel->name))
      return s->modes[i].mode;
  }
  return s->default_mode;
}

/* The stream entry id of a change: "<v>-<index>", v = the version number of its transaction's
 * start position (od_pos_kind.version; the LSN for PostgreSQL), index = its place in the
 * transaction. Later changes get higher ids; a replay delivers the same changes with the same
 * positions, so XADD refuses their entries as not above the stream's top. */
static int rd_entry_id(const rd_sink *s, const od_change *c, char *out, size_t n, od_error *err) {
  const od_pos *p = c->txn_start;
  if (!p || od_pos_is_none(p) || !p->kind->version)
    return OD_FAIL(err, OD_EUNSUPPORTED, "redis sink %s: table %s.%s (mode stream): the change has no position with "
                   "a version number to derive a stream entry id from", s->name, c->rel->schema, c->rel->name);
  uint64_t v = p->kind->version(p);
  snprintf(out, n, "%llu-%llu", (unsigned long long)v, (unsigned long long)c->index + 1);
  return OD_OK;
}

/* <prefix>:<table>:<key values joined by ':'> (':' and '\' inside a value escaped with '\'). */
static int row_key(rd_sink *s, const od_change *c, const od_tuple *t, od_sqlbuf *out, od_error *err) {
  od_sqlbuf_reset(out);
  od_sqlbuf_addf(out, "%s:", s->prefix);
  rd_table_name(c->rel, out);
  int nkey = 0;
  for (uint16_t i = 0; i < c->rel->ncolumns; i++) {
    if (!c->rel->columns[i].key) continue;
    nkey++;
    if (i >= t->ncolumns || t->values[i].kind != OD_VALUE_TEXT)
      return OD_FAIL(err, OD_ESINK, "redis sink %s: table %s.%s: key column %s has no value in the change", s->name,
                     c->rel->schema, c->rel->name, c->rel->columns[i].name);
    od_sqlbuf_add(out, ":");
    const od_value *v = &t->values[i];
    for (uint32_t k = 0; k < v->len; k++) {
      if (v->data[k] == ':' || v->data[k] == '\\') od_sqlbuf_add(out, "\\");
      od_sqlbuf_addn(out, v->data + k, 1);
    }
  }
  if (!nkey)
    return OD_FAIL(err, OD_EUNSUPPORTED, "redis sink %s: table %s.%s has no primary key or replica identity index: "
                   "rows cannot be named as Redis keys (give it a primary key, or use mode stream for it)", s->name,
                   c->rel->schema, c->rel->name);
  if (out->oom) return OD_FAIL(err, OD_ENOMEM, "redis sink %s: out of memory", s->name);
  return OD_OK;
}

static bool key_moved(const od_change *c) {
  if (c->op != OD_OP_UPDATE || !c->old_kind) return false;
  for (uint16_t i = 0; i < c->rel->ncolumns; i++) {
    if (!c->rel->columns[i].key || i >= c->oldtup.ncolumns || i >= c->newtup.ncolumns) continue;
    const od_value *a = &c->oldtup.values[i], *b = &c->newtup.values[i];
    if (a->kind != OD_VALUE_TEXT || b->kind != OD_VALUE_TEXT) continue;
    if (a->len != b->len || memcmp(a->data, b->data, a->len)) return true;
  }
  return false;
}

static int cmd1(rd_sink *s, const char *a0, const od_sqlbuf *k, od_error *err) {
  const char *argv[2] = {a0, k->p};
  size_t len[2] = {strlen(a0), k->len};
  return rd_append(s, 2, argv, len, err);
}

static int expire(rd_sink *s, const od_sqlbuf *k, od_error *err) {
  if (s->ttl_seconds <= 0) return OD_OK;
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%ld", s->ttl_seconds);
  const char *argv[3] = {"EXPIRE", k->p, ttl};
  size_t len[3] = {6, k->len, strlen(ttl)};
  return rd_append(s, 3, argv, len, err);
}

/* Move old key's value to the new key (a key update): COPY old new REPLACE, DEL old. */
static int move_key(rd_sink *s, const od_sqlbuf *from, const od_sqlbuf *to, od_error *err) {
  const char *argv[4] = {"COPY", from->p, to->p, "REPLACE"};
  size_t len[4] = {4, from->len, to->len, 7};
  int rc = rd_append(s, 4, argv, len, err);
  return rc ? rc : cmd1(s, "DEL", from, err);
}

/* A value of the change's after-image, the before-image standing in for an unchanged TOAST value
 * when it is a full row (REPLICA IDENTITY FULL). NULL when the value is unknown. */
static const od_value *value_of(const od_change *c, uint16_t i) {
  if (i >= c->newtup.ncolumns) return NULL;
  const od_value *v = &c->newtup.values[i];
  if (v->kind != OD_VALUE_UNCHANGED) return v;
  if (c->old_kind == 'O' && i < c->oldtup.ncolumns && c->oldtup.values[i].kind != OD_VALUE_UNCHANGED)
    return &c->oldtup.values[i];
  return NULL;
}

typedef struct argv_buf {
  const char **argv;
  size_t *len;
  int n, cap;
} argv_buf;

static int argv_init(argv_buf *a, int cap) {
  a->argv = malloc((size_t)cap * sizeof *a->argv);
  a->len = malloc((size_t)cap * sizeof *a->len);
  a->n = 0;
  a->cap = cap;
  return a->argv && a->len ? 0 : -1;
}
static void argv_free(argv_buf *a) {
  free(a->argv);
  free(a->len);
}
static void argv_add(argv_buf *a, const char *p, size_t n) {
  if (a->n < a->cap) {
    a->argv[a->n] = p;
    a->len[a->n++] = n;
  }
}

static bool has_unchanged(const od_tuple *t) {
  for (uint16_t i = 0; i < t->ncolumns; i++)
    if (t->values[i].kind == OD_VALUE_UNCHANGED) return true;
  return false;
}

/* Sets the fields of a hash that exists, removes the listed ones; leaves a missing key missing
 * (an expired or evicted row is not recreated from part of its columns).
 * KEYS[1] = the hash; ARGV[1] = number of field/value pairs, then the pairs, then fields to delete. */
static const char partial_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local n = tonumber(ARGV[1]) "
    "if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 2, 1 + 2 * n)) end "
    "if #ARGV > 1 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 2 + 2 * n)) end "
    "return 1";

static int apply_hash(rd_sink *s, const od_change *c, od_error *err) {
  const od_relation *rel = c->rel;
  int rc;
  if (c->op == OD_OP_DELETE) {
    if ((rc = row_key(s, c, &c->oldtup, &s->key, err))) return rc;
    return cmd1(s, "DEL", &s->key, err);
  }
  if ((rc = row_key(s, c, &c->newtup, &s->key, err))) return rc;
  /* A whole row (every insert, snapshot row, and update that resent every value) replaces the
   * hash; an update with unchanged TOAST values changes the fields it has and keeps the others. */
  bool partial = c->op == OD_OP_UPDATE && has_unchanged(&c->newtup);
  if (c->op == OD_OP_UPDATE && key_moved(c)) {
    if ((rc = row_key(s, c, &c->oldtup, &s->aux, err))) return rc;
    rc = partial ? move_key(s, &s->aux, &s->key, err) : cmd1(s, "DEL", &s->aux, err);
    if (rc) return rc;
  }
  if (!partial && (rc = cmd1(s, "DEL", &s->key, err))) return rc;
  argv_buf a = {0}; /* freed on failure: initialised first */
  if (argv_init(&a, 2 * rel->ncolumns + 8)) {
    argv_free(&a);
    return OD_FAIL(err, OD_ENOMEM, "redis sink %s: out of memory", s->name);
  }
  char npairs[16];
  if (partial) {
    argv_add(&a, "EVAL", 4);
    argv_add(&a, partial_script, sizeof partial_script - 1);
    argv_add(&a, "1", 1);
    argv_add(&a, s->key.p, s->key.len);
    argv_add(&a, npairs, 0); /* filled below */
  } else {
    argv_add(&a, "HSET", 4);
    argv_add(&a, s->key.p, s->key.len);
  }
  int pairs = 0;
  for (uint16_t i = 0; i < rel->ncolumns && i < c->newtup.ncolumns; i++) {
    const od_value *v = &c->newtup.values[i];
    if (v->kind != OD_VALUE_TEXT) continue; /* NULL: no field; unchanged: the stored field stays */
    argv_add(&a, rel->columns[i].name, strlen(rel->columns[i].name));
    argv_add(&a, v->data, v->len);
    pairs++;
  }
  if (partial) {
    snprintf(npairs, sizeof npairs, "%d", pairs);
    a.len[4] = strlen(npairs);
    for (uint16_t i = 0; i < rel->ncolumns && i < c->newtup.ncolumns; i++)
      if (c->newtup.values[i].kind == OD_VALUE_NULL) argv_add(&a, rel->columns[i].name, strlen(rel->columns[i].name));
  }
  rc = OD_OK;
  if (partial || pairs > 0) rc = rd_append(s, a.n, a.argv, a.len, err);
  argv_free(&a);
  return rc ? rc : expire(s, &s->key, err);
}

static bool json_number(uint32_t oid, const od_value *v) {
  switch (oid) {
    case OD_PGT_INT8: case OD_PGT_INT2: case OD_PGT_INT4: case OD_PGT_OID: return true;
    case OD_PGT_FLOAT4: case OD_PGT_FLOAT8: case OD_PGT_NUMERIC:
      return strcmp(v->data, "NaN") && !strstr(v->data, "Infinity");
    default: return false;
  }
}

static int apply_json(rd_sink *s, const od_change *c, od_error *err) {
  const od_relation *rel = c->rel;
  int rc;
  if (c->op == OD_OP_DELETE) {
    if ((rc = row_key(s, c, &c->oldtup, &s->key, err))) return rc;
    return cmd1(s, "DEL", &s->key, err);
  }
  if ((rc = row_key(s, c, &c->newtup, &s->key, err))) return rc;
  if (c->op == OD_OP_UPDATE && key_moved(c)) {
    if ((rc = row_key(s, c, &c->oldtup, &s->aux, err)) || (rc = cmd1(s, "DEL", &s->aux, err))) return rc;
  }
  od_sqlbuf *b = &s->val;
  od_sqlbuf_reset(b);
  od_sqlbuf_add(b, "{");
  for (uint16_t i = 0; i < rel->ncolumns; i++) {
    const od_value *v = value_of(c, i);
    if (!v)
      return OD_FAIL(err, OD_ESINK, "redis sink %s: table %s.%s (mode json): an update left column %s unchanged (a "
                     "TOASTed value PostgreSQL did not resend); a JSON value is written whole, so set REPLICA IDENTITY "
                     "FULL on the source table or use mode hash", s->name, rel->schema, rel->name,
                     rel->columns[i].name);
    if (i) od_sqlbuf_add(b, ",");
    od_sqlbuf_json_str(b, rel->columns[i].name, strlen(rel->columns[i].name));
    od_sqlbuf_add(b, ":");
    if (v->kind == OD_VALUE_NULL)
      od_sqlbuf_add(b, "null");
    else if (rel->columns[i].type_oid == OD_PGT_BOOL)
      od_sqlbuf_add(b, v->data[0] == 't' ? "true" : "false");
    else if (json_number(rel->columns[i].type_oid, v))
      od_sqlbuf_addn(b, v->data, v->len);
    else
      od_sqlbuf_json_str(b, v->data, v->len);
  }
  od_sqlbuf_add(b, "}");
  if (b->oom) return OD_FAIL(err, OD_ENOMEM, "redis sink %s: out of memory", s->name);
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%ld", s->ttl_seconds);
  const char *argv[5] = {"SET", s->key.p, b->p, "EX", ttl};
  size_t len[5] = {3, s->key.len, b->len, 2, strlen(ttl)};
  return rd_append(s, s->ttl_seconds > 0 ? 5 : 3, argv, len, err);
}

static int apply_invalidate(rd_sink *s, const od_change *c, od_error *err) {
  int rc;
  if (c->op == OD_OP_DELETE || key_moved(c)) {
    if ((rc = row_key(s, c, &c->oldtup, &s->key, err)) || (rc = cmd1(s, "DEL", &s->key, err))) return rc;
    if (c->op == OD_OP_DELETE) return OD_OK;
  }
  if ((rc = row_key(s, c, &c->newtup, &s->key, err))) return rc;
  return cmd1(s, "DEL", &s->key, err);
}

static int apply_stream(rd_sink *s, const od_change *c, od_error *err) {
  const od_relation *rel = c->rel;
  od_sqlbuf_reset(&s->key);
  od_sqlbuf_addf(&s->key, "%s:", s->prefix);
  rd_table_name(rel, &s->key);
  char id[64], maxlen[32];
  int rc = rd_entry_id(s, c, id, sizeof id, err);
  if (rc) return rc;
  snprintf(maxlen, sizeof maxlen, "%ld", s->stream_maxlen);
  static const char *const ops[] = {['I'] = "insert", ['U'] = "update", ['D'] = "delete", ['T'] = "truncate", ['R'] = "read"};
  const char *op = c->op < sizeof ops / sizeof ops[0] && ops[c->op] ? ops[c->op] : "change";
  argv_buf a = {0};
  if (argv_init(&a, 2 * rel->ncolumns + 10)) {
    argv_free(&a);
    return OD_FAIL(err, OD_ENOMEM, "redis sink %s: out of memory", s->name);
  }
  argv_add(&a, "XADD", 4);
  argv_add(&a, s->key.p, s->key.len);
  argv_add(&a, "MAXLEN", 6);
  argv_add(&a, "~", 1);
  argv_add(&a, maxlen, strlen(maxlen));
  argv_add(&a, id, strlen(id));
  argv_add(&a, "op", 2);
  argv_add(&a, op, strlen(op));
  const od_tuple *t = c->op == OD_OP_DELETE ? &c->oldtup : &c->newtup;
  for (uint16_t i = 0; c->op != OD_OP_TRUNCATE && i < rel->ncolumns && i < t->ncolumns; i++) {
    const od_value *v = &t->values[i];
    if (v->kind != OD_VALUE_TEXT) continue; /* NULL and unchanged values: no field */
    argv_add(&a, rel->columns[i].name, strlen(rel->columns[i].name));
    argv_add(&a, v->data, v->len);
  }
  if (s->key.oom) {
    argv_free(&a);
    return OD_FAIL(err, OD_ENOMEM, "redis sink %s: out of memory", s->name);
  }
  rc = rd_append(s, a.n, a.argv, a.len, err);
  argv_free(&a);
  return rc;
}

/* Delete every key of the table (hash, json, invalidate): a server-side scan inside the MULTI. */
static int truncate_keys(rd_sink *s, const od_relation *rel, od_error *err) {
  static const char script[] =
      "local c = '0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) c = r[1] "
      "for _, k in ipairs(r[2]) do redis.call('DEL', k) end until c == '0' return 0";
  od_sqlbuf_reset(&s->aux);
  od_sqlbuf_reset(&s->key);
  od_sqlbuf_addf(&s->aux, "%s:", s->prefix);
  rd_table_name(rel, &s->aux);
  od_sqlbuf_add(&s->aux, ":");
  for (size_t i = 0; i < s->aux.len; i++) { /* glob-escape the literal part */
    char ch = s->aux.p[i];
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') od_sqlbuf_add(&s->key, "\\");
    od_sqlbuf_addn(&s->key, &ch, 1);
  }
  od_sqlbuf_add(&s->key, "*");
  if (s->key.oom || s->aux.oom) return OD_FAIL(err, OD_ENOMEM, "redis sink %s: out of memory", s->name);
  const char *argv[4] = {"EVAL", script, "0", s->key.p};
  size_t len[4] = {4, sizeof script - 1, 1, s->key.len};
  return rd_append(s, 4, argv, len, err);
}

int rd_apply_change(rd_sink *s, const od_change *c, od_error *err) {
  if (c->op == OD_OP_MESSAGE || !c->rel) return OD_OK;
  int mode = rd_mode_of(s, c->rel);
  /* Rows of the initial snapshot (no transaction position): a stream carries changes only, and
   * there is nothing to invalidate yet. */
  bool initial = !c->txn_start || od_pos_is_none(c->txn_start);
  if (c->op == OD_OP_READ && initial && (mode == RD_STREAM || mode == RD_INVALIDATE)) return OD_OK;
  if (c->op == OD_OP_TRUNCATE && mode != RD_STREAM) return truncate_keys(s, c->rel, err);
  switch (mode) {
    case RD_HASH: return apply_hash(s, c, err);
    case RD_JSON: return apply_json(s, c, err);
    case RD_INVALIDATE: return apply_invalidate(s, c, err);
    default: return apply_stream(s, c, err);
  }
}
