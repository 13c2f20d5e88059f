/* tblowner.c — see tblowner.h. Owns nothing; never touches a database. */
#include "common/tblowner.h"

#include <stdio.h>
#include <string.h>

static bool bare(const char *s) {
  if (!*s || !((*s >= 'a' && *s <= 'z') || *s == '_')) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '$')) return false;
  return true;
}

static size_t put_part(char *out, size_t cap, size_t at, const char *s) {
  bool q = !bare(s);
  if (q && at + 1 < cap) out[at++] = '"';
  for (const char *p = s; *p && at + 1 < cap; p++) {
    if (q && *p == '"' && at + 2 < cap) out[at++] = '"';
    out[at++] = *p;
  }
  if (q && at + 1 < cap) out[at++] = '"';
  return at;
}

void od_owner_source_name(char *out, size_t cap, const char *schema, const char *name) {
  if (!cap) return;
  size_t at = put_part(out, cap, 0, schema ? schema : "");
  if (at + 1 < cap) out[at++] = '.';
  at = put_part(out, cap, at, name ? name : "");
  out[at < cap ? at : cap - 1] = '\0';
}

int od_owner_fail_taken(od_error *err, const char *sink, const char *target, const char *owner_pipeline,
                        const char *owner_source, const char *pipeline, const char *source, const char *fix) {
  bool same = strcmp(owner_pipeline, pipeline) == 0;
  return OD_FAIL(err, OD_ESCHEMA,
                 "%s: table %s: source table %s of pipeline %s would be written to table %s, which already holds "
                 "source table %s of %s%s (recorded in _odsync_tables); their rows would mix, so nothing of this "
                 "transaction was written. %s",
                 sink, target, source, pipeline, target, owner_source, same ? "the same pipeline" : "pipeline ",
                 same ? "" : owner_pipeline, fix);
}

/* The --table argument of `odsync snapshot` for schema.name (it takes the names as PostgreSQL
 * stores them), in single quotes for the shell when it holds anything but [A-Za-z0-9_.$]. */
static void snapshot_arg(char *out, size_t cap, const char *schema, const char *name) {
  char raw[400];
  snprintf(raw, sizeof raw, "%s.%s", schema, name);
  bool plain = true;
  for (const char *p = raw; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
          *p == '.' || *p == '$'))
      plain = false;
  if (plain) {
    snprintf(out, cap, "%s", raw);
    return;
  }
  size_t at = 0;
  if (at + 1 < cap) out[at++] = '\'';
  for (const char *p = raw; *p && at + 5 < cap; p++) {
    if (*p == '\'') {
      memcpy(out + at, "'\\''", 4);
      at += 4;
    } else {
      out[at++] = *p;
    }
  }
  if (at + 1 < cap) out[at++] = '\'';
  out[at] = '\0';
}

int od_owner_fail_dropped(od_error *err, const char *sink, const char *target, const char *pipeline,
                          const char *schema, const char *name, bool keyed, const char *forget) {
  char source[400], arg[420];
  od_owner_source_name(source, sizeof source, schema, name);
  snapshot_arg(arg, sizeof arg, schema, name);
  if (keyed)
    return OD_FAIL(err, OD_ESCHEMA,
                   "%s: table %s (source table %s, pipeline %s) is gone from the sink (dropped by hand?); making it "
                   "again empty would leave it with only the rows changed from now on, so nothing was written. "
                   "Re-copy it: `odsync snapshot -c CONFIG -p %s --table %s`, then start odsync again (the table is "
                   "made anew and filled while the pipeline streams); or, to accept a table that starts empty, %s",
                   sink, target, source, pipeline, pipeline, arg, forget);
  return OD_FAIL(err, OD_ESCHEMA,
                 "%s: table %s (source table %s, pipeline %s) is gone from the sink (dropped by hand?); making it "
                 "again empty would leave it with only the rows changed from now on, so nothing was written. The "
                 "table has no key, so it cannot be re-copied by itself: start pipeline %s over into a new sink; or, "
                 "to accept a table that starts empty, %s",
                 sink, target, source, pipeline, pipeline, forget);
}
