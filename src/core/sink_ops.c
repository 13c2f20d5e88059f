/* sink_ops.c — the capability check of sink vtables and the wrappers through which the core calls
 * a sink's optional slots (odsync/sink.h). Owns nothing; never touches a sink's state. */
#include <stdlib.h>
#include <string.h>

#include "odsync/sink.h"

int od_sink_ops_check(const od_sink_ops *o, od_error *err) {
  const char *t = o->type ? o->type : "?";
  if (!o->type || !o->open || !o->read_position || !o->begin || !o->apply || !o->commit || !o->commit_data ||
      !o->rollback || !o->close)
    return OD_FAIL(err, OD_EINVAL, "sink type %s: a required slot of od_sink_ops is missing", t);
  bool marks = o->caps & OD_SINK_MARKS, text = o->caps & OD_SINK_TEXT_MARKS, bulk = o->caps & OD_SINK_BULK_LOAD;
  if (marks != (o->set_mark && o->get_mark))
    return OD_FAIL(err, OD_EINVAL, "sink type %s: OD_SINK_MARKS %s but set_mark/get_mark are %s", t,
                   marks ? "is declared" : "is not declared", marks ? "missing" : "there");
  if (text != (o->set_text_mark && o->get_text_mark) || (text && !marks))
    return OD_FAIL(err, OD_EINVAL, "sink type %s: OD_SINK_TEXT_MARKS needs set_text_mark, get_text_mark and "
                   "OD_SINK_MARKS, and those slots need the capability", t);
  if (bulk != (o->load_prepare && o->load && o->load_finish))
    return OD_FAIL(err, OD_EINVAL, "sink type %s: OD_SINK_BULK_LOAD and load_prepare/load/load_finish must go "
                   "together", t);
  bool own = o->caps & OD_SINK_TABLE_OWNERSHIP;
  if (own != (o->check_tables && o->resnapshot_table) || (!o->check_tables != !o->resnapshot_table))
    return OD_FAIL(err, OD_EINVAL, "sink type %s: OD_SINK_TABLE_OWNERSHIP and check_tables/resnapshot_table must go "
                   "together", t);
  bool dl = o->caps & OD_SINK_DEAD_LETTERS;
  bool dl_slots = o->savepoint && o->put_dead_letter && o->list_dead_letters && o->drop_dead_letter;
  bool dl_any = o->savepoint || o->put_dead_letter || o->list_dead_letters || o->drop_dead_letter;
  if (dl != dl_slots || dl_slots != dl_any)
    return OD_FAIL(err, OD_EINVAL, "sink type %s: OD_SINK_DEAD_LETTERS and savepoint/put_dead_letter/"
                   "list_dead_letters/drop_dead_letter must go together", t);
  if (!(o->caps & OD_SINK_DEFERRED_DURABILITY) != !o->durable)
    return OD_FAIL(err, OD_EINVAL, "sink type %s: OD_SINK_DEFERRED_DURABILITY and durable must go together", t);
  if (o->max_writers < 1) return OD_FAIL(err, OD_EINVAL, "sink type %s: max_writers must be at least 1", t);
  return OD_OK;
}

static int unsupported(od_sink *s, const char *what, od_error *err) {
  return OD_FAIL(err, OD_EUNSUPPORTED, "the %s sink cannot store %s", s->ops->type, what);
}

int od_sink_set_mark(od_sink *s, const char *key, uint64_t value, od_error *err) {
  if (!od_sink_can(s, OD_SINK_MARKS)) return unsupported(s, "marks (snapshot progress)", err);
  return s->ops->set_mark(s, key, value, err);
}

int od_sink_get_mark(od_sink *s, const char *key, uint64_t *out, od_error *err) {
  if (!od_sink_can(s, OD_SINK_MARKS)) return unsupported(s, "marks (snapshot progress)", err);
  return s->ops->get_mark(s, key, out, err);
}

int od_sink_set_text_mark(od_sink *s, const char *key, const char *text, od_error *err) {
  if (!od_sink_can(s, OD_SINK_TEXT_MARKS)) return unsupported(s, "text marks", err);
  return s->ops->set_text_mark(s, key, text, err);
}

int od_sink_get_text_mark(od_sink *s, const char *key, char **out, od_error *err) {
  if (!od_sink_can(s, OD_SINK_TEXT_MARKS)) return unsupported(s, "text marks", err);
  return s->ops->get_text_mark(s, key, out, err);
}

int od_sink_set_pos_mark(od_sink *s, const char *key, const od_pos *pos, od_error *err) {
  if (od_pos_is_none(pos)) return od_sink_set_text_mark(s, key, NULL, err);
  char text[OD_POS_TEXT_MAX];
  od_pos_to_text(pos, text, sizeof text);
  return od_sink_set_text_mark(s, key, text, err);
}

int od_sink_get_pos_mark(od_sink *s, const char *key, od_pos *out, od_error *err) {
  *out = od_pos_none();
  char *text = NULL;
  int rc = od_sink_get_text_mark(s, key, &text, err);
  if (rc) return rc;
  if (text) {
    rc = od_pos_from_text(text, out, err);
    if (rc) od_error_prefix(err, "sink mark %s: ", key);
    free(text);
    return rc;
  }
  uint64_t legacy = 0;
  if ((rc = od_sink_get_mark(s, key, &legacy, err))) return rc;
  *out = od_pos_legacy_lsn(legacy);
  return OD_OK;
}

#define DEAD_LETTERS "dead letters (on_poison: dead_letter; see docs/DEAD_LETTERS.md)"

int od_sink_savepoint(od_sink *s, int op, od_error *err) {
  if (!od_sink_can(s, OD_SINK_DEAD_LETTERS)) return unsupported(s, DEAD_LETTERS, err);
  return s->ops->savepoint(s, op, err);
}

int od_sink_put_dead_letter(od_sink *s, const od_dead_letter *dl, od_error *err) {
  if (!od_sink_can(s, OD_SINK_DEAD_LETTERS)) return unsupported(s, DEAD_LETTERS, err);
  return s->ops->put_dead_letter(s, dl, err);
}

int od_sink_list_dead_letters(od_sink *s, const char *pipeline, int64_t id,
                              int (*each)(void *ctx, const od_dead_letter *dl), void *ctx, od_error *err) {
  if (!od_sink_can(s, OD_SINK_DEAD_LETTERS)) return unsupported(s, DEAD_LETTERS, err);
  return s->ops->list_dead_letters(s, pipeline, id, each, ctx, err);
}

int od_sink_drop_dead_letter(od_sink *s, int64_t id, bool *found, od_error *err) {
  if (!od_sink_can(s, OD_SINK_DEAD_LETTERS)) return unsupported(s, DEAD_LETTERS, err);
  return s->ops->drop_dead_letter(s, id, found, err);
}

int od_sink_durable(od_sink *s, bool poll, od_pos *out, od_error *err) {
  if (!od_sink_can(s, OD_SINK_DEFERRED_DURABILITY)) return unsupported(s, "commits that become durable later", err);
  return s->ops->durable(s, poll, out, err);
}
