/* config_section.c — typed reads of an adapter's own config section (od_config_find, _string,
 * _int, _bool, _list, _check_keys): what adapters call to validate and read their keys.
 * Owns nothing: every answer points into the section, which the od_config owns.
 * Never touches: the YAML document (the section is already parsed), files, servers.
 */
#include "odsync/config.h"
#include "core/config_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *sfile(const od_config_section *s) { return s->file ? s->file : "<config>"; }
static const char *spath(const od_config_section *s) { return s->path ? s->path : "section"; }

const od_config_entry *od_config_find(const od_config_section *s, const char *key) {
  if (!s || !key) return NULL;
  for (int i = 0; i < s->nentries; i++)
    if (strcmp(s->entries[i].key, key) == 0) return &s->entries[i];
  return NULL;
}

int od_config_fail_key(const od_config_section *s, const char *key, od_error *err, const char *fmt, ...) {
  const od_config_entry *e = od_config_find(s, key);
  char text[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  return fail_at(err, sfile(s), e ? e->line : s->line, e ? e->col : s->col, "%s%s", spath(s), text);
}

static int scalar_entry(const od_config_section *s, const od_config_entry *e, od_error *err) {
  if (e->value) return OD_OK;
  return fail_at(err, sfile(s), e->line, e->col, "%s.%s: expected a single value, got a list",
                 spath(s), e->key);
}

int od_config_string(const od_config_section *s, const char *key, const char *def, const char **out,
                     od_error *err) {
  const od_config_entry *e = od_config_find(s, key);
  *out = def;
  if (!e) return OD_OK;
  int rc = scalar_entry(s, e, err);
  if (rc) return rc;
  *out = e->value;
  return OD_OK;
}

int od_config_require_string(const od_config_section *s, const char *key, const char **out,
                             od_error *err) {
  const od_config_entry *e = od_config_find(s, key);
  *out = NULL;
  if (!e)
    return fail_at(err, sfile(s), s->line, s->col, "%s: missing required key '%s'; add '%s: ...'",
                   spath(s), key, key);
  int rc = scalar_entry(s, e, err);
  if (rc) return rc;
  if (!e->value[0])
    return fail_at(err, sfile(s), e->line, e->col, "%s.%s is empty; expected a value", spath(s), key);
  *out = e->value;
  return OD_OK;
}

int od_config_int(const od_config_section *s, const char *key, long def, long min, long max,
                  long *out, od_error *err) {
  const od_config_entry *e = od_config_find(s, key);
  *out = def;
  if (!e) return OD_OK;
  int rc = scalar_entry(s, e, err);
  if (rc) return rc;
  char buf[SHOW_MAX + 8];
  long x = 0;
  int r = parse_long(e->value, &x);
  if (r == -1)
    return fail_at(err, sfile(s), e->line, e->col,
                   "%s.%s: %s is not an integer; expected a whole number in %ld..%ld", spath(s), key,
                   shown(buf, sizeof buf, e->value, e->secret), min, max);
  if (r == -2 || x < min || x > max)
    return fail_at(err, sfile(s), e->line, e->col, "%s.%s: %s is out of range; expected %ld..%ld",
                   spath(s), key, shown(buf, sizeof buf, e->value, e->secret), min, max);
  *out = x;
  return OD_OK;
}

int od_config_bool(const od_config_section *s, const char *key, bool def, bool *out, od_error *err) {
  static const char *const yes[] = {"true", "yes", "on", "1", NULL};
  static const char *const no[] = {"false", "no", "off", "0", NULL};
  const od_config_entry *e = od_config_find(s, key);
  *out = def;
  if (!e) return OD_OK;
  int rc = scalar_entry(s, e, err);
  if (rc) return rc;
  for (size_t i = 0; yes[i]; i++) {
    if (strcasecmp(e->value, yes[i]) == 0) {
      *out = true;
      return OD_OK;
    }
    if (strcasecmp(e->value, no[i]) == 0) {
      *out = false;
      return OD_OK;
    }
  }
  char buf[SHOW_MAX + 8];
  return fail_at(err, sfile(s), e->line, e->col,
                 "%s.%s: %s is not a boolean; expected true/false, yes/no, on/off or 1/0", spath(s),
                 key, shown(buf, sizeof buf, e->value, e->secret));
}

int od_config_list(const od_config_section *s, const char *key, char *const **out, int *n,
                   od_error *err) {
  (void)err;
  const od_config_entry *e = od_config_find(s, key);
  *out = NULL;
  *n = 0;
  if (!e) return OD_OK;
  if (e->list) {
    *out = e->list;
    *n = e->nlist;
  } else if (e->value && e->value[0]) {
    *out = &e->value;
    *n = 1;
  }
  return OD_OK;
}

int od_config_check_keys(const od_config_section *s, const char *const *allowed, od_error *err) {
  for (int i = 0; i < s->nentries; i++) {
    const od_config_entry *e = &s->entries[i];
    bool ok = false;
    for (size_t j = 0; allowed[j] && !ok; j++) ok = strcmp(e->key, allowed[j]) == 0;
    if (!ok) return unknown_key(err, sfile(s), e->line, e->col, e->key, spath(s), allowed);
  }
  return OD_OK;
}

