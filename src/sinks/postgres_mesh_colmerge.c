/* sinks/postgres_mesh_colmerge.c — a mesh sink's decisions by column: column versions, column rules
 * and column merges (docs/MULTI_MASTER.md, "column_merge: which columns, and why the nodes converge",
 * "Business rules and column_merge").
 *
 * Owns: a key state's per-column versions as the decisions read and write them (d->also as
 * ver_entry lists, "seen" and "later" per column, the local write a concurrent remote write competes
 * with, the versions after a merge); the column rules of mesh_rules (the rule columns fetched by the
 * versions read, a value's rank, the business rules on a whole pair in mesh_rules order with the SQL
 * rules' answers, a column's order of its writes within a merge); and the column_merge of a remote
 * write: an update or an insert merged into the live row (an override whose columns the remote write
 * does not take are UNCHANGED), a re-creation that takes the tombstone's last row, a losing write's
 * columns kept in the tombstone's image (one UPDATE of _odsync_tombstones in the open transaction),
 * and the tests whether a change is merged at all.
 * Never touches: which path a change takes and the conflict log (postgres_mesh_decide.c), the key
 * states' storage, the counters' deltas and state (postgres_mesh_counter.c), the local column
 * versions read from _odsync_colver (postgres_mesh_colver.c), transactions, the apply path.
 * Pointer ownership: d->also and d->row are the key state's (malloc'd; replaced here, the old ones
 * freed); an override made here owns its value array and texts (freed by pgs_mesh_overrides_free), its
 * other values are borrowed from the change; changes, stamps and policies are borrowed.
 */
#include "sinks/postgres_mesh_internal.h"

#include <math.h>

/* ---- column versions (column_merge) -------------------------------------------------------------
 * A row merged by column holds several concurrent writes. Its version is then kept per column:
 * d->also lists, for every column of the table, the write (node:ts:hlc) that last set it; the
 * row's (d->node, d->ts, d->hlc) is the latest of them. A row never merged has one version for
 * all columns (d->also NULL). A write saw the row when it saw every column's write; a column both
 * sides changed goes to the fallback between the remote write and *that column's* write, so every
 * node decides each column by the same pair, whatever order the writes arrived in. */

/* The row's version as an entry. */
ver_entry pgs_mesh_row_ver(const pgs_mesh *m, const decision *d) {
  ver_entry row = {.weak = false};
  snprintf(row.node, sizeof row.node, "%s", d->node[0] ? d->node : m->node);
  row.ts = d->ts;
  row.hlc = d->hlc == INT64_MIN ? d->ts : d->hlc;
  return row;
}

/* The column versions of d (ncol of them). An entry with an empty node is unknown: the column
 * was not changed by either side of the merges so far (or the row was never merged), and whether
 * a write changed it locally is then told by its value (local != the remote write's old value). */
void pgs_mesh_col_vers(const decision *d, int ncol, ver_entry *out) {
  int n = 0;
  for (const char *c = d->also; c && *c && n < ncol;) {
    size_t l = strcspn(c, ",");
    char item[128];
    snprintf(item, sizeof item, "%.*s", (int)(l < sizeof item ? l : sizeof item - 1), c);
    char *p1 = strchr(item, ':'), *p2 = p1 ? strchr(p1 + 1, ':') : NULL;
    out[n] = (ver_entry){.ts = INT64_MIN, .hlc = INT64_MIN};
    if (p1 && p2 && item[0] == '~') {
      out[n].weak = true;
      memmove(item, item + 1, strlen(item));
      p1--;
      p2--;
    }
    if (p1 && p2) {
      *p1 = *p2 = '\0';
      snprintf(out[n].node, sizeof out[n].node, "%.63s", item);
      out[n].ts = strtoll(p1 + 1, NULL, 10);
      out[n].hlc = strtoll(p2 + 1, NULL, 10);
    }
    n++;
    c += l + (c[l] == ',');
  }
  for (; n < ncol; n++) out[n] = (ver_entry){.ts = INT64_MIN, .hlc = INT64_MIN};
}

static bool entry_seen(const pgs_mesh *m, const stamp *st, const ver_entry *v) {
  if (strcmp(v->node, m->peer) == 0) return true; /* the peer's own earlier write */
  const vv_entry *e = pgs_mesh_vv_find(st->vv, st->nvv, v->node);
  return e && v->ts <= e->ts;
}

bool pgs_mesh_ver_seen(const pgs_mesh *m, const stamp *st, const char *node, int64_t ts) {
  ver_entry v = {.ts = ts, .hlc = ts};
  snprintf(v.node, sizeof v.node, "%s", node && node[0] ? node : m->node);
  return entry_seen(m, st, &v);
}

static bool entry_later(const ver_entry *a, const ver_entry *b) {
  return a->hlc != b->hlc ? a->hlc > b->hlc : strcmp(a->node, b->node) > 0;
}

int pgs_mesh_ncols_of(const decision *d) {
  return d->r->rel->ncolumns < MERGE_COLS_MAX ? d->r->rel->ncolumns : MERGE_COLS_MAX;
}

/* Was the key's current version seen by the remote writer before it wrote? */
bool pgs_mesh_seen_by_remote(const pgs_mesh *m, const stamp *st, const decision *d) {
  if (!d->has_ver || d->ts == INT64_MIN) return true; /* none, or unknown (frozen) */
  /* This stream's write earlier in the run: seen — but not on a column_merge row, which that write
   * may have left holding columns its author had not seen (a re-creation takes the columns it did
   * not change from the tombstone's last row): the columns are judged by their versions, and the
   * peer's own are seen anyway (docs/MULTI_MASTER.md, "column_merge": a peer's later write). */
  if (d->ours && (!d->also || d->tomb)) return true;
  ver_entry row = pgs_mesh_row_ver(m, d);
  /* a tombstone: the delete (its column versions, kept for a re-creation, are all older) */
  if (!d->also || d->tomb) return entry_seen(m, st, &row);
  ver_entry cv[MERGE_COLS_MAX];
  int n = pgs_mesh_ncols_of(d);
  pgs_mesh_col_vers(d, n, cv);
  for (int i = 0; i < n; i++)
    if (cv[i].node[0] && !entry_seen(m, st, &cv[i])) return false;
  return true;
}

/* A copy of d whose version is v (the policies read d->node and d->hlc). */
static decision with_ver(const decision *d, const ver_entry *v) {
  decision c = *d;
  snprintf(c.node, sizeof c.node, "%s", v->node);
  c.ts = v->ts;
  c.hlc = v->hlc;
  return c;
}

/* The local version a concurrent remote write competes with as a whole row (insert, delete, a
 * rule): the latest column write it had not seen. */
decision pgs_mesh_competitor(const pgs_mesh *m, const stamp *st, const decision *d) {
  if (!d->also || d->tomb) return *d;
  ver_entry cv[MERGE_COLS_MAX];
  int n = pgs_mesh_ncols_of(d), best = -1;
  pgs_mesh_col_vers(d, n, cv);
  for (int i = 0; i < n; i++)
    if (cv[i].node[0] && !entry_seen(m, st, &cv[i]) && (best < 0 || entry_later(&cv[i], &cv[best]))) best = i;
  return best < 0 ? *d : with_ver(d, &cv[best]);
}

/* After a column merge: cv (the columns' writes, the remote's where it took them) becomes the
 * key's version: the latest of them as the row's, all of them in d->also. */
int pgs_mesh_set_col_vers(pgs_sink *s, pgs_mesh *m, decision *d, const ver_entry *cv, int n, od_error *err) {
  int top = -1;
  for (int i = 0; i < n; i++)
    if (cv[i].node[0] && (top < 0 || entry_later(&cv[i], &cv[top]))) top = i;
  if (top < 0) return OD_OK; /* nothing decided: the row keeps its version */
  snprintf(d->node, sizeof d->node, "%s", cv[top].node);
  d->ts = cv[top].ts;
  d->hlc = cv[top].hlc;
  od_sqlbuf b = {0};
  for (int i = 0; i < n; i++) {
    if (i) od_sqlbuf_add(&b, ",");
    if (cv[i].node[0])
      od_sqlbuf_addf(&b, "%s%s:%" PRId64 ":%" PRId64, cv[i].weak ? "~" : "", cv[i].node, cv[i].ts, cv[i].hlc);
  }
  if (b.oom) {
    od_sqlbuf_free(&b);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  free(d->also);
  d->also = b.p; /* ownership of the buffer's bytes passes to the key state */
  (void)m;
  return OD_OK;
}

/* The rules of r, appended to the fetched columns cols[n..]: rule_of[k] = rule index. Returns the
 * new total. */
int pgs_mesh_rule_cols(const pgs_mesh *m, const pg_rel *r, int *cols, int n, int *rule_of) {
  size_t tl = strlen(r->target);
  for (int i = 0; i < m->nrules && n < COUNTERS_MAX; i++) {
    const char *c = m->rules[i].column;
    if (strncmp(c, r->target, tl) != 0 || c[tl] != '.') continue;
    for (int j = 0; j < r->rel->ncolumns; j++)
      if (strcmp(r->rel->columns[j].name, c + tl + 1) == 0) {
        rule_of[n] = i;
        cols[n++] = j;
      }
  }
  return n;
}

/* A column rule's rank of a value (text of len bytes; NULL: SQL NULL): its number ("higher wins") or
 * its position in the order. false: a value the rule cannot rank (NULL, not a finite number, not in
 * the order). */
static bool rule_rank(const struct rule *ru, const char *v, size_t len, double *out) {
  if (!v) return false;
  if (!ru->order) {
    char buf[64], *end = NULL;
    if (!len || len >= sizeof buf) return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    *out = strtod(buf, &end);
    return end != buf && !*end && isfinite(*out);
  }
  for (int i = 0; i < ru->norder; i++)
    if (strlen(ru->order[i]) == len && memcmp(ru->order[i], v, len) == 0) {
      *out = i;
      return true;
    }
  return false;
}

/* One column rule (fetched column k) on a concurrent pair: >0 the remote version wins, <0 the local
 * one, 0 undecided (equal, or a value the rule cannot rank on either side). */
static int col_rule(const pgs_mesh *m, const od_change *c, const decision *d, const int *cols, int k,
                    const int *rule_of) {
  const struct rule *ru = &m->rules[rule_of[k]];
  const od_value *rv = cols[k] < c->newtup.ncolumns ? &c->newtup.values[cols[k]] : NULL;
  const char *lval = k < d->nval ? d->val[k] : NULL;
  double a = 0, b = 0;
  if (!rv || rv->kind != OD_VALUE_TEXT || !rule_rank(ru, rv->data, rv->len, &a) ||
      !rule_rank(ru, lval, lval ? strlen(lval) : 0, &b) || a == b)
    return 0;
  return a > b ? 1 : -1;
}

/* The column rule of mesh_rules matching column j of r, from index *i on (advanced past it); NULL: none. */
static const struct rule *next_col_rule(const pgs_mesh *m, const pg_rel *r, int j, int *i) {
  if (j >= r->rel->ncolumns) return NULL;
  size_t tl = strlen(r->target);
  const char *name = r->rel->columns[j].name;
  for (; *i < m->nrules; (*i)++) {
    const struct rule *ru = &m->rules[*i];
    if (!ru->sql && strncmp(ru->column, r->target, tl) == 0 && ru->column[tl] == '.' &&
        strcmp(ru->column + tl + 1, name) == 0) {
      (*i)++;
      return ru;
    }
  }
  return NULL;
}

static bool col_has_rule(const pgs_mesh *m, const pg_rel *r, int j) {
  int i = 0;
  return next_col_rule(m, r, j, &i) != NULL;
}

/* column_merge: the column rules of column j order that column's concurrent writes, in place of the
 * fallback (docs/MULTI_MASTER.md, "Business rules and column_merge"): >0 value a ranks above value
 * b, <0 below, 0 no rule tells them apart (the fallback decides). A value a rule cannot rank ranks
 * below every value it can, so (rank, then the fallback's clock order) is one total order of the
 * column's writes, the same on every node: the column stays a register. */
static int col_order(const pgs_mesh *m, const pg_rel *r, int j, const char *a, size_t alen, const char *b,
                     size_t blen) {
  int i = 0;
  for (const struct rule *ru; (ru = next_col_rule(m, r, j, &i));) {
    double x = 0, y = 0;
    bool ka = rule_rank(ru, a, alen, &x), kb = rule_rank(ru, b, blen, &y);
    if (ka != kb) return ka ? 1 : -1;
    if (ka && x != y) return x > y ? 1 : -1;
  }
  return 0;
}

/* col_order of a change's value (an od_value: UNCHANGED never ranks) against a stored text. */
static int col_order_val(const pgs_mesh *m, const pg_rel *r, int j, const od_value *v, const char *local) {
  if (v->kind == OD_VALUE_UNCHANGED) return 0;
  return col_order(m, r, j, v->kind == OD_VALUE_TEXT ? v->data : NULL, v->len, local, local ? strlen(local) : 0);
}

/* Business rules on a concurrent pair, in mesh_rules order (column rules and SQL rules, sq): *out >0
 * the remote version wins, <0 the local one, 0 undecided (the policy decides). sql_only: a pair with
 * a delete on one side, which only SQL rules judge (the deleted side's row is NULL). */
int pgs_mesh_rules_decide(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *changes, size_t ci, decision *d,
                          const int *cols, int from, int to, const int *rule_of, sqlrule_run *sq, bool sql_only,
                          int *out, od_error *err) {
  const od_change *c = &changes[ci];
  *out = 0;
  for (int i = 0; i < m->nrules && !*out; i++) {
    if (m->rules[i].sql) {
      for (int k = 0; k < sq->n && !*out; k++) {
        if (sq->rule[k] != i) continue;
        int rc = pgs_mesh_sqlrule_get(s, m, r, sq, changes, ci, d, k, false, out, err);
        if (rc) return rc;
      }
      continue;
    }
    for (int k = from; k < to && !*out && !sql_only; k++)
      if (rule_of[k] == i) *out = col_rule(m, c, d, cols, k, rule_of);
  }
  /* No rule decided a pair with a delete (its record NULL): the SQL rules again, in order, with the
   * delete ranked as the row it deleted, when both rows are known (docs/MULTI_MASTER.md, "Rules and
   * concurrent deletes") */
  for (int k = 0; k < sq->n && !*out && (c->op == OD_OP_DELETE || d->tomb); k++) {
    int rc = pgs_mesh_sqlrule_get(s, m, r, sq, changes, ci, d, k, true, out, err);
    if (rc) return rc;
  }
  if (sq->n && !*out && !m->rank_warned && ((c->op == OD_OP_DELETE && c->old_kind != 'O') || (d->tomb && !d->img))) {
    m->rank_warned = true;
    od_warn("postgres sink %s: mesh %s <- %s: table %s has SQL rules, and a concurrent pair with a delete could not "
            "be ranked: the deleted row is unknown (%s); the policy decides such pairs, and rows deleted "
            "concurrently can leave the nodes apart: run ALTER TABLE %s REPLICA IDENTITY FULL on every node and "
            "restart odsync (docs/MULTI_MASTER.md, \"Rules and concurrent deletes\")", s->where, m->node, m->peer,
            r->target, c->op == OD_OP_DELETE && c->old_kind != 'O' ? "the delete came without REPLICA IDENTITY FULL"
                                                                   : "this node's tombstone has no image",
            r->target);
  }
  return OD_OK;
}

/* ---- column_merge ------------------------------------------------------------------------------ */

static bool is_key_col(const pg_rel *r, int col) {
  for (int k = 0; k < r->nkey; k++)
    if ((int)PGS_COL(r->key_plan[k]) == col) return true;
  return false;
}

static bool same_val(const od_value *a, const od_value *b) {
  if (a->kind != b->kind) return false;
  if (a->kind == OD_VALUE_NULL) return true;
  return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/* A change's value against a local value read as text (NULL: SQL null). */
static bool same_text(const od_value *v, const char *t) {
  if (v->kind == OD_VALUE_NULL) return t == NULL;
  if (v->kind != OD_VALUE_TEXT || !t) return false;
  return strlen(t) == v->len && memcmp(v->data, t, v->len) == 0;
}

static void json_name(od_sqlbuf *b, const char *name) {
  if (b->len) od_sqlbuf_add(b, ",");
  pgs_mesh_json_str(b, name);
}

/* column_merge: the version of a key column when a remote insert is merged into the live row. The
 * key's value is the same on both sides, but the insert wrote it as it wrote every column (its
 * author's trigger records it so, and so does every node where it is applied whole): the column is
 * a register like the others, and must end with the same write on every node whatever the order of
 * arrival — the insert's when it saw the column's write, else the fallback's winner between the
 * two (docs/MULTI_MASTER.md, "column_merge": the key columns). */
static void key_version(const pgs_mesh *m, const mesh_pol *pol, const stamp *st, const decision *d, ver_entry *cv,
                        const ver_entry *rowv) {
  ver_entry lw = cv->node[0] ? *cv : *rowv;
  lw.weak = false;
  decision cd = with_ver(d, &lw);
  if (!entry_seen(m, st, &lw) && !pgs_mesh_remote_wins(m, pol, st, &cd)) {
    *cv = lw;
    return;
  }
  snprintf(cv->node, sizeof cv->node, "%s", m->peer);
  cv->ts = st->ts;
  cv->hlc = st->hlc;
  cv->weak = false;
}

/* column_merge of a remote update (with its full old image: REPLICA IDENTITY FULL) into the live
 * local row d->row. The remote change writes the columns it changed (old != new), except a column
 * the local version changed too (local != old, concurrent only) when the fallback keeps the local
 * version (rw false), and a column the local version kept against an earlier change of the same
 * source transaction (d->lmask). The columns it does not write are UNCHANGED in an override of the
 * change (the apply path updates the sent columns only). *apply: it writes some column. detail
 * (NULL: not wanted) gets {"remote": [...], "local": [...], "both": [...], "counters": [...]}, winner
 * (NULL: not wanted; WINNER_MAX bytes) the conflict's winner; *both: a column was changed on both
 * sides. d->row follows the merged values.
 * Counter columns (k; kdelta: the change's deltas are in d->ctr already) are never changed columns
 * for the overlap test: one the update changed takes d->ctr (local + delta) whoever wins, and is
 * listed under "counters"; its version is decided exactly as another column's (the fallback between
 * the remote write and the column's writer when both changed it). Without a delta (an insert) a
 * counter is a column like any other. */
int pgs_mesh_merge_columns(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const mesh_pol *pol, const stamp *st,
                           const od_change *c, size_t idx, decision *d, ver_entry *cv, const ver_entry *rowv,
                           const ctr_in *k, bool kdelta, bool *apply, od_sqlbuf *detail, char *winner,
                           od_error *err) {
  bool conflict = cv != NULL;
  int rwon = 0, lwon = 0;
  char lwinner[64] = ""; /* per call: sinks of several pipelines decide at once, in their threads */
  int ncol = c->newtup.ncolumns;
  od_value *vals = malloc((size_t)(ncol ? ncol : 1) * sizeof *vals);
  char **texts = calloc((size_t)ncol + 1, sizeof *texts); /* the override's own texts (counters, touch) */
  int ntexts = 0;
  if (!vals || !texts) {
    free(vals);
    free(texts);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  od_sqlbuf lists[5] = {{0}}; /* remote, local, both, counters, rule */
  int taken = 0;
  int rc = OD_OK;
  for (int j = 0; j < ncol; j++) {
    const od_value *nv = &c->newtup.values[j], *ov = j < c->oldtup.ncolumns ? &c->oldtup.values[j] : NULL;
    vals[j] = *nv;
    if (is_key_col(r, j)) { /* the key is the same on both sides (else no merge); an insert writes it */
      if (conflict && c->op == OD_OP_INSERT && j < MERGE_COLS_MAX) key_version(m, pol, st, d, &cv[j], rowv);
      continue;
    }
    bool known = d->row && j < d->nrow;
    const char *lv = known ? d->row[j] : NULL;
    const char *name = j < r->rel->ncolumns ? r->rel->columns[j].name : "?";
    bool rchg = nv->kind != OD_VALUE_UNCHANGED && !(ov && same_val(nv, ov));
    /* changed here, unseen by the remote writer: by the column's version when known, else by value */
    bool kcv = conflict && j < MERGE_COLS_MAX && cv[j].node[0] && !cv[j].weak;
    bool lchg = conflict && (kcv ? !entry_seen(m, st, &cv[j]) : (!known || !ov || !same_text(ov, lv)));
    uint64_t bit = j < MERGE_COLS_MAX ? 1ULL << j : 0;
    int kc = kdelta ? pgs_mesh_ctr_index(k, j) : -1; /* a counter merged as a delta */
    bool take = rchg;
    if (d->lmask & bit) {
      take = false;
    } else if (rchg && lchg && j < MERGE_COLS_MAX) {
      /* both changed the column: the remote write against the write that set it here (equal
       * values too: the column's version must be the same pair's winner on every node) */
      ver_entry lw = conflict && j < MERGE_COLS_MAX && cv[j].node[0] ? cv[j] : *rowv;
      lw.weak = false;
      decision cd = with_ver(d, &lw);
      if (kc < 0) json_name(&lists[2], name);
      /* a column rule orders the column's writes first (never a counter's: its value is a sum) */
      int ord = kc < 0 && known ? col_order_val(m, r, j, nv, lv) : 0;
      if (ord) json_name(&lists[4], name);
      if (ord ? ord > 0 : pgs_mesh_remote_wins(m, pol, st, &cd)) {
        if (kc < 0) rwon++;
      } else {
        if (kc < 0) {
          lwon++;
          snprintf(lwinner, sizeof lwinner, "%s", lw.node);
        }
        take = false;
        d->lmask |= bit;
        cv[j] = lw;
      }
    } else if (rchg) {
      if (kc < 0) json_name(&lists[0], name);
    } else if (lchg) {
      if (kc < 0) json_name(&lists[1], name);
      if (j < MERGE_COLS_MAX && !cv[j].node[0]) { /* a local write changed it: the row's version stands for it */
        cv[j] = *rowv;
        cv[j].weak = true;
      }
    }
    if (take && cv && j < MERGE_COLS_MAX) {
      snprintf(cv[j].node, sizeof cv[j].node, "%s", m->peer);
      cv[j].ts = st->ts;
      cv[j].hlc = st->hlc;
      cv[j].weak = false;
    }
    if (kc >= 0 && rchg) {
      /* a counter: local + delta, whichever write its version went to */
      json_name(&lists[3], name);
      if (!(texts[ntexts] = pgs_mesh_ll_text(d->ctr[kc]))) {
        rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
        break;
      }
      vals[j] = (od_value){.data = texts[ntexts], .len = (uint32_t)strlen(texts[ntexts]), .kind = OD_VALUE_TEXT};
      nv = &vals[j];
      ntexts++;
      take = true;
    }
    if (!take) {
      vals[j] = (od_value){.kind = OD_VALUE_UNCHANGED};
      continue;
    }
    taken++;
    if (known) {
      free(d->row[j]);
      d->row[j] = NULL;
      if (nv->kind == OD_VALUE_TEXT && !(d->row[j] = strndup(nv->data, nv->len))) {
        rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
        break;
      }
    }
  }
  if (rc == OD_OK && detail) {
    static const char *const names[5] = {"remote", "local", "both", "counters", "rule"};
    od_sqlbuf_add(detail, "{");
    for (int i = 0; i < 5; i++)
      if (i < 3 || lists[i].p) od_sqlbuf_addf(detail, "%s\"%s\": [%s]", i ? ", " : "", names[i], lists[i].p ? lists[i].p : "");
    od_sqlbuf_add(detail, "}");
  }
  for (int i = 0; i < 5; i++) od_sqlbuf_free(&lists[i]);
  if (winner) snprintf(winner, WINNER_MAX, "%s", rwon && !lwon ? m->peer : lwon && !rwon ? lwinner : "merged");
  /* A conflict whose remote write takes no column still rewrites the row (one column set to its
   * local value): the row's version becomes the merged set, kept in the side table, which is read
   * only for rows a mesh sink wrote last. */
  for (int j = 0; rc == OD_OK && conflict && !taken && j < ncol && j < d->nrow; j++) {
    if (is_key_col(r, j)) continue;
    if (d->row[j] && !(texts[ntexts] = strdup(d->row[j]))) {
      rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      break;
    }
    vals[j] = d->row[j] ? (od_value){.data = texts[ntexts], .len = (uint32_t)strlen(texts[ntexts]), .kind = OD_VALUE_TEXT}
                        : (od_value){.kind = OD_VALUE_NULL};
    if (d->row[j]) ntexts++;
    taken++;
  }
  if (rc == OD_OK) *apply = taken > 0;
  if (rc == OD_OK && *apply) rc = pgs_mesh_reserve_override(s, m, err);
  if (rc || !*apply) {
    for (int i = 0; i < ntexts; i++) free(texts[i]);
    free(texts);
    free(vals);
    return rc;
  }
  /* owns vals and its texts; the other values are borrowed from c */
  m->ovr[m->novr++] = (struct override){.idx = idx, .vals = vals, .texts = texts, .ntexts = ntexts,
                                        .as_update = c->op == OD_OP_INSERT};
  return OD_OK;
}

/* column_merge: a remote update that re-creates a deleted row takes the columns it did not change
 * from the tombstone's last row (d->row), as it would have left them on the live row: the row is
 * the same whichever of the delete and the update a node applied first. A column it (or a
 * re-creating insert) wrote whose tombstone version it had not seen and a column rule ranks above
 * its value keeps the tombstone's value, and *kept gets its bit (its version stays too), as the rule
 * would have kept it on the live row. An override of the change (texts owned by it); none for an
 * insert that keeps no column. */
int pgs_mesh_recreate_override(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, size_t idx,
                               const decision *d, const ctr_in *k, const stamp *st, uint64_t *kept, od_error *err) {
  int ncol = c->newtup.ncolumns;
  bool upd = c->op == OD_OP_UPDATE && c->old_kind == 'O' && c->oldtup.ncolumns == ncol;
  *kept = 0;
  if ((!upd && c->op != OD_OP_INSERT) || !ncol) return OD_OK;
  ver_entry cv[MERGE_COLS_MAX];
  int ncv = pgs_mesh_ncols_of(d);
  pgs_mesh_col_vers(d, ncv, cv);
  for (int j = 0; m->nrules && j < ncol && j < ncv && j < d->nrow; j++) {
    const od_value *nv = &c->newtup.values[j];
    bool wrote = nv->kind != OD_VALUE_UNCHANGED && (!upd || !same_val(nv, &c->oldtup.values[j]));
    if (!wrote || is_key_col(r, j) || pgs_mesh_ctr_index(k, j) >= 0 || !cv[j].node[0] || entry_seen(m, st, &cv[j])) continue;
    if (col_order_val(m, r, j, nv, d->row[j]) < 0) *kept |= 1ULL << j;
  }
  if (!upd && !*kept) return OD_OK;
  int grown = pgs_mesh_reserve_override(s, m, err);
  if (grown) return grown;
  od_value *vals = malloc((size_t)ncol * sizeof *vals);
  char **texts = calloc((size_t)ncol, sizeof *texts);
  if (!vals || !texts) {
    free(vals);
    free(texts);
    return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
  }
  struct override *o = &m->ovr[m->novr++];
  *o = (struct override){.idx = idx, .vals = vals, .texts = texts};
  for (int j = 0; j < ncol; j++) {
    const od_value *nv = &c->newtup.values[j];
    vals[j] = *nv;
    int kc = k->delta_ok ? pgs_mesh_ctr_index(k, j) : -1;
    long long img;
    od_value iv = j < d->nrow && d->row[j] ? (od_value){.data = d->row[j], .len = (uint32_t)strlen(d->row[j]),
                                                        .kind = OD_VALUE_TEXT}
                                           : (od_value){.kind = OD_VALUE_NULL};
    if (upd && kc >= 0 && !is_key_col(r, j) && pgs_mesh_int_of(&iv, &img)) {
      /* a counter: the tombstone's last value plus the delta, as on a node where the update met the
       * live row before the delete (local + delta there, kept in the tombstone by the delete) */
      if (!(texts[o->ntexts] = pgs_mesh_ll_text(img + k->delta[kc])))
        return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
      vals[j] = (od_value){.data = texts[o->ntexts], .len = (uint32_t)strlen(texts[o->ntexts]), .kind = OD_VALUE_TEXT};
      o->ntexts++;
      continue;
    }
    bool keep = j < 64 && (*kept >> j & 1);
    if (!keep && (!upd || is_key_col(r, j) || j >= d->nrow ||
                  (nv->kind != OD_VALUE_UNCHANGED && !same_val(nv, &c->oldtup.values[j]))))
      continue;
    if (!d->row[j]) {
      vals[j] = (od_value){.kind = OD_VALUE_NULL};
      continue;
    }
    if (!(texts[o->ntexts] = strdup(d->row[j]))) return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    vals[j] = (od_value){.data = texts[o->ntexts], .len = (uint32_t)strlen(texts[o->ntexts]), .kind = OD_VALUE_TEXT};
    o->ntexts++;
  }
  return OD_OK;
}

/* column_merge: a remote insert or update that lost to a tombstone: each column it wrote (an insert:
 * every one; an update: those it changed) whose version is older than the write (or seen by it)
 * takes the write's value in the tombstone's last row (img) and its version in d->also. */
int pgs_mesh_image_columns(pgs_sink *s, pgs_mesh *m, const pg_rel *r, const od_change *c, const stamp *st, decision *d,
                           const ctr_in *k, bool counters_only, od_error *err) {
  ver_entry cv[MERGE_COLS_MAX], w = {.ts = st->ts, .hlc = st->hlc};
  snprintf(w.node, sizeof w.node, "%s", m->peer);
  int n = pgs_mesh_ncols_of(d), taken = 0, keys = 0;
  pgs_mesh_col_vers(d, n, cv);
  od_sqlbuf names = {0}, vals = {0};
  od_sqlbuf_add(&names, "{");
  od_sqlbuf_add(&vals, "{");
  bool upd = c->op == OD_OP_UPDATE && c->old_kind == 'O' && c->oldtup.ncolumns == c->newtup.ncolumns;
  for (int j = 0; j < n && j < c->newtup.ncolumns && j < d->nrow; j++) {
    const od_value *nv = &c->newtup.values[j];
    bool concurrent = cv[j].node[0] && !entry_seen(m, st, &cv[j]);
    bool older = !(concurrent && !entry_later(&w, &cv[j]));
    if (is_key_col(r, j)) { /* an insert wrote the key too: its version (the value is the key's own) */
      if (c->op == OD_OP_INSERT && older && !counters_only) {
        cv[j] = w;
        keys++;
      }
      continue;
    }
    if (nv->kind == OD_VALUE_UNCHANGED || (upd && same_val(nv, &c->oldtup.values[j]))) continue;
    int kc = k->delta_ok ? pgs_mesh_ctr_index(k, j) : -1;
    long long img;
    od_value iv = d->row[j] ? (od_value){.data = d->row[j], .len = (uint32_t)strlen(d->row[j]), .kind = OD_VALUE_TEXT}
                            : (od_value){.kind = OD_VALUE_NULL};
    bool ctr = kc >= 0 && pgs_mesh_int_of(&iv, &img);
    if (counters_only && !ctr) continue;
    if (concurrent && kc < 0 && pgs_mesh_ctr_index(k, j) < 0) { /* a column rule orders the column's writes first */
      int ord = col_order_val(m, r, j, nv, d->row[j]);
      if (ord) older = ord > 0;
    }
    if (!older && !ctr) continue;
    /* a counter: the tombstone's last value plus the delta, whichever write its version is */
    char *t = ctr ? pgs_mesh_ll_text(img + k->delta[kc]) : nv->kind == OD_VALUE_TEXT ? strndup(nv->data, nv->len) : NULL;
    if ((ctr || nv->kind == OD_VALUE_TEXT) && !t) {
      od_sqlbuf_free(&names);
      od_sqlbuf_free(&vals);
      return OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    }
    free(d->row[j]);
    d->row[j] = t;
    if (older) cv[j] = w;
    pgs_mesh_arr_add(&names, r->rel->columns[j].name);
    if (t) pgs_mesh_arr_add(&vals, t);
    else od_sqlbuf_add(&vals, vals.len > 1 ? ",NULL" : "NULL");
    taken++;
  }
  od_sqlbuf_add(&names, "}");
  od_sqlbuf_add(&vals, "}");
  int rc = OD_OK;
  if (taken) { /* the values; the versions below */
    od_sqlbuf *b = &s->sql;
    od_sqlbuf_reset(b);
    od_sqlbuf_add(b, "UPDATE ");
    od_sqlbuf_add(b, m->tomb_q);
    od_sqlbuf_add(b, " SET img = coalesce(img, '{}'::jsonb) || jsonb_object($3::text[], $4::text[]) WHERE tbl = $1 "
                     "AND key = $2");
    const char *p[4] = {r->target, d->key, names.p, vals.p};
    PGresult *res = b->oom || names.oom || vals.oom
                        ? NULL
                        : pgs_exec(s, m->tomb_q, "keeping a losing write's columns in a tombstone (mesh)", b->p, 4, p, err);
    if (!res) rc = b->oom || names.oom || vals.oom ? OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where)
                                                 : err->code;
    PQclear(res);
  }
  if (taken || keys) {
    if (rc == OD_OK) { /* the tombstone's version stays the delete's; its columns' are written with it */
      char *keep_node = strdup(d->node);
      int64_t ts = d->ts, hlc = d->hlc;
      rc = pgs_mesh_set_col_vers(s, m, d, cv, n, err);
      if (keep_node) snprintf(d->node, sizeof d->node, "%s", keep_node);
      free(keep_node);
      d->ts = ts;
      d->hlc = hlc;
      if (rc == OD_OK && !pgs_mesh_wr_push(m, d)) rc = OD_FAIL(err, OD_ENOMEM, "postgres sink %s: out of memory", s->where);
    }
  }
  od_sqlbuf_free(&names);
  od_sqlbuf_free(&vals);
  return rc;
}

/* A column merge is possible: an update of a live row read whole, with the full old image and the
 * same key before and after. */
bool pgs_mesh_mergeable(const pg_rel *r, const od_change *c, const decision *d) {
  /* column_merge with column versions: an insert meeting a live row writes every column, each one
   * decided against that column's version (per column as for an update, not the whole row) */
  if (c->op == OD_OP_INSERT) return d->also && d->row && !d->tomb && d->has_ver;
  if (c->op != OD_OP_UPDATE || c->old_kind != 'O' || !d->row || d->tomb || !d->has_ver) return false;
  for (int k = 0; k < r->nkey; k++) {
    int col = PGS_COL(r->key_plan[k]);
    if (col >= c->oldtup.ncolumns || col >= c->newtup.ncolumns ||
        !same_val(&c->oldtup.values[col], &c->newtup.values[col]))
      return false;
  }
  return true;
}

/* column_merge with a column rule: an insert meeting a live row without column versions (a row only
 * its node has written since the trigger) is merged too, each column against the row's version. Decided
 * whole, the clock alone would order a ruled column there, while a third node, where the row had
 * versions, orders it by the rule. */
bool pgs_mesh_insert_ruled(const pgs_mesh *m, const pg_rel *r, const od_change *c, const decision *d) {
  if (c->op != OD_OP_INSERT || d->also || !d->row || d->tomb || !d->has_ver) return false;
  for (int j = 0; j < r->rel->ncolumns && j < MERGE_COLS_MAX; j++)
    if (!is_key_col(r, j) && col_has_rule(m, r, j)) return true;
  return false;
}

/* An update with the full old row that changed no column (every new value equals the old one or
 * is an unchanged TOASTed value): a write of no column, as its author's _odsync_colver trigger
 * recorded it (it compares OLD and NEW the same way, on the values' text). */
bool pgs_mesh_wrote_nothing(const od_change *c) {
  if (c->op != OD_OP_UPDATE || c->old_kind != 'O' || c->oldtup.ncolumns != c->newtup.ncolumns) return false;
  for (int j = 0; j < c->newtup.ncolumns; j++) {
    const od_value *nv = &c->newtup.values[j];
    if (nv->kind != OD_VALUE_UNCHANGED && !same_val(nv, &c->oldtup.values[j])) return false;
  }
  return true;
}

/* Has every column of d a recorded write (a non-empty entry in d->also)? */
bool pgs_mesh_all_cols_known(const decision *d) {
  if (!d->also) return false;
  ver_entry cv[MERGE_COLS_MAX];
  int n = pgs_mesh_ncols_of(d);
  pgs_mesh_col_vers(d, n, cv);
  for (int i = 0; i < n; i++)
    if (!cv[i].node[0]) return false;
  return true;
}
