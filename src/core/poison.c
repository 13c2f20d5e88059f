/* poison.c — see core/poison.h. */
#include "core/poison.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sqlbuf.h"
#include "core/audit.h"
#include "core/dead_letter.h"
#include "core/dl_seal.h"
#include "core/error_class.h"
#include "core/log.h"

void od_poison_init(od_poison *p, const od_pipeline_config *cfg, const char *sink, const char *name) {
  memset(p, 0, sizeof *p);
  snprintf(p->pipeline, sizeof p->pipeline, "%s", cfg->name);
  snprintf(p->sink, sizeof p->sink, "%s", sink);
  p->policy = cfg->on_poison;
  p->attempts = cfg->poison_attempts > 0 ? cfg->poison_attempts : 3;
  snprintf(p->name, sizeof p->name, "%s", name);
  p->isolate_until = od_pos_none();
  p->last_seen = od_pos_none();
}

bool od_poison_isolating(const od_poison *p, const od_change *ch) {
  return !od_pos_is_none(&p->isolate_until) && ch->txn_start && od_pos_le(ch->txn_start, &p->isolate_until);
}

bool od_poison_on_failure(od_poison *p, od_error *err) {
  p->restart = false;
  if (od_error_classify(err) != OD_ERRCLASS_ROW || od_pos_is_none(&p->last_seen)) return false;
  if (!od_pos_is_none(&p->isolate_until) && od_pos_le(&p->last_seen, &p->isolate_until)) return false;
  p->isolate_until = p->last_seen;
  p->restart = true;
  return true;
}

static void where(const od_change *ch, char *pos, size_t size) {
  char t[OD_POS_TEXT_MAX];
  if (ch->txn_start) od_pos_to_text(ch->txn_start, t, sizeof t);
  else snprintf(t, sizeof t, "snapshot");
  snprintf(pos, size, "%s#%u", t, ch->index);
}

static const char *code_of(const od_error *e, char *buf, size_t size) {
  if (e->sqlstate[0]) return e->sqlstate;
  if (e->sqlite_code) {
    snprintf(buf, size, "sqlite:%d", e->sqlite_code);
    return buf;
  }
  return "";
}

/* Tries exhausted: a dead letter in the open transaction, or the end of the pipeline. */
static int poisoned(od_poison *p, od_sink *s, const od_change *ch, int tries, const od_error *why, od_error *err) {
  char pos[OD_POS_TEXT_MAX + 16], key[512], table[300], code[32];
  where(ch, pos, sizeof pos);
  od_dead_letter_key(ch, key, sizeof key);
  snprintf(table, sizeof table, "%s.%s", ch->rel ? ch->rel->schema : "?", ch->rel ? ch->rel->name : "?");
  if (p->policy != OD_POISON_DEAD_LETTER)
    return OD_FAIL(err, OD_ESINK,
                   "poison row: the sink rejected the %s of table %s, key %s, at source position %s, %d times: %s. "
                   "on_poison is stop: fix the sink's table (constraint, trigger, type) or the row and start again, "
                   "or set on_poison: dead_letter to keep such rows in _odsync_dead_letters and go on",
                   od_op_word(ch->op), table, key, pos, tries, why->msg);
  char *json = NULL, *stored = NULL, *error = NULL;
  if (od_dead_letter_json(ch, &json)) return OD_FAIL(err, OD_ENOMEM, "poison row: out of memory");
  int rc = od_dl_seal(p->kr, p->name, pos, "change", json, &stored, err);
  if (!rc) rc = od_dl_seal(p->kr, p->name, pos, "error", why->msg, &error, err);
  memset(json, 0, strlen(json));
  free(json);
  if (!rc) {
    od_dead_letter dl = {.pipeline = p->name, .position = pos, .table = table, .op = od_op_word(ch->op),
                         .change = stored, .error = error, .code = code_of(why, code, sizeof code),
                         .attempts = tries};
    rc = od_sink_put_dead_letter(s, &dl, err);
  }
  free(stored);
  free(error);
  if (rc) return od_error_prefix(err, "storing a dead letter (table %s, key %s): ", table, key);
  od_warn("%s: poison row: the %s of table %s, key %s, at %s was rejected %d times (%s); stored as a dead letter, "
          "committed with the rest of its transaction (odsync dlq list)", p->name, od_op_word(ch->op), table, key, pos, tries, why->msg);
  if (!p->pending++) snprintf(p->first_pos, sizeof p->first_pos, "%s", pos);
  return OD_OK;
}

/* One change under a savepoint, tried until it goes in or is poison. */
static int apply_one(od_poison *p, od_sink *s, const od_change *ch, bool *dead, od_error *err) {
  *dead = false;
  /* The failed batch of the last session was the first try. */
  int tries = 1;
  for (;;) {
    int rc = od_sink_savepoint(s, OD_SAVEPOINT_SET, err);
    if (rc) return rc;
    rc = s->ops->apply(s, ch, 1, err);
    if (!rc) rc = od_sink_savepoint(s, OD_SAVEPOINT_RELEASE, err);
    if (!rc) return OD_OK;
    if (od_error_classify(err) != OD_ERRCLASS_ROW) return rc; /* the caller rolls back */
    tries++;
    od_error why = *err;
    if ((rc = od_sink_savepoint(s, OD_SAVEPOINT_ROLLBACK, err))) return rc;
    if (tries >= p->attempts) {
      *dead = true;
      return poisoned(p, s, ch, tries, &why, err);
    }
  }
}

int od_poison_apply(od_poison *p, od_sink *s, const od_change *ch, size_t n, size_t *dead, od_error *err) {
  *dead = 0;
  size_t i = 0;
  if (n && od_poison_isolating(p, &ch[0])) p->in_batch = true;
  for (; i < n && od_poison_isolating(p, &ch[i]); i++) {
    bool d;
    int rc = apply_one(p, s, &ch[i], &d, err);
    if (rc) return rc;
    *dead += d;
  }
  return i < n ? s->ops->apply(s, ch + i, n - i, err) : OD_OK;
}

void od_poison_committed(od_poison *p) {
  if (p->pending) {
    if (p->dead_letters_total) atomic_fetch_add(p->dead_letters_total, p->pending);
    if (p->dead_letters) atomic_fetch_add(p->dead_letters, (int64_t)p->pending);
    if (od_audit_enabled()) {
      od_sqlbuf b = {0};
      od_sqlbuf_add(&b, "\"sink\":");
      od_audit_json_str(&b, p->sink);
      od_sqlbuf_addf(&b, ",\"count\":%llu,\"first_position\":", (unsigned long long)p->pending);
      od_audit_json_str(&b, p->first_pos);
      if (!b.oom) od_audit_record(p->pipeline, "dead_letters", b.p);
      od_sqlbuf_free(&b);
    }
  }
  p->pending = 0;
  p->in_batch = false;
}

void od_poison_discarded(od_poison *p) {
  p->pending = 0;
  p->in_batch = false;
}
