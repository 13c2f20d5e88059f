/* schema_plan.c — see schema_plan.h. */
#include "common/schema_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool same_name(const char *a, const char *b, bool fold) { return fold ? !strcasecmp(a, b) : !strcmp(a, b); }

static int push(od_schema_plan *p, int *cap, od_plan_step s) {
  if (p->nsteps == *cap) {
    int c = *cap ? *cap * 2 : 8;
    od_plan_step *n = realloc(p->steps, (size_t)c * sizeof *n);
    if (!n) return OD_ENOMEM;
    p->steps = n;
    *cap = c;
  }
  p->steps[p->nsteps++] = s;
  return OD_OK;
}

int od_schema_plan_make(const od_relation *rel, const od_plan_col *t, int n, bool fold, od_schema_plan *p) {
  memset(p, 0, sizeof *p);
  int cap = 0;
  char (*name)[80] = calloc((size_t)(n ? n : 1), sizeof *name); /* each table column's name as renames go */
  p->match = calloc((size_t)(n ? n : 1), sizeof *p->match);
  p->drop = calloc((size_t)(n ? n : 1), sizeof *p->drop);
  if (!name || !p->match || !p->drop) goto oom;
  for (int k = 0; k < n; k++) {
    p->match[k] = -1;
    snprintf(name[k], sizeof name[k], "%s", t[k].name);
  }
  /* Match: by attnum where both sides know it, else by name. */
  for (int i = 0; i < rel->ncolumns; i++) {
    const od_column *c = &rel->columns[i];
    int found = -1;
    for (int k = 0; c->attnum && k < n && found < 0; k++)
      if (p->match[k] < 0 && t[k].meta && t[k].attnum == c->attnum) found = k;
    for (int k = 0; k < n && found < 0; k++)
      if (p->match[k] < 0 && !(t[k].meta && t[k].attnum && c->attnum) && same_name(t[k].name, c->name, fold)) found = k;
    if (found >= 0) p->match[found] = i;
  }
  bool all_attnums = true;
  for (int i = 0; i < rel->ncolumns; i++) all_attnums = all_attnums && rel->columns[i].attnum;
  /* Drops: columns odsync recorded that are gone at the source. */
  for (int k = 0; k < n; k++) {
    if (p->match[k] >= 0 || !(t[k].meta && t[k].attnum && all_attnums)) continue;
    p->drop[k] = 1;
    p->drops++;
    if (push(p, &cap, (od_plan_step){.kind = OD_PLAN_DROP, .tcol = k, .rcol = -1})) goto oom;
    name[k][0] = '\0';
  }
  /* Renames: straight while the new name is free... */
  for (int k = 0; k < n; k++) {
    if (p->match[k] < 0 || same_name(name[k], rel->columns[p->match[k]].name, false)) continue;
    const char *want = rel->columns[p->match[k]].name;
    bool taken = false;
    for (int j = 0; j < n && !taken; j++) taken = j != k && name[j][0] && same_name(name[j], want, fold);
    if (taken) continue;
    od_plan_step s = {.kind = OD_PLAN_RENAME, .tcol = k, .rcol = p->match[k]};
    snprintf(s.from, sizeof s.from, "%s", name[k]);
    snprintf(s.to, sizeof s.to, "%s", want);
    if (push(p, &cap, s)) goto oom;
    p->renames++;
    snprintf(name[k], sizeof name[k], "%s", want);
    k = -1; /* a rename may free a name another column waits for */
  }
  /* ...what is left is a cycle: through temporary names, then to the final ones. */
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < n; k++) {
      if (p->match[k] < 0 || same_name(name[k], rel->columns[p->match[k]].name, false)) continue;
      od_plan_step s = {.kind = OD_PLAN_RENAME, .tcol = k, .rcol = pass ? p->match[k] : -1};
      snprintf(s.from, sizeof s.from, "%s", name[k]);
      if (pass)
        snprintf(s.to, sizeof s.to, "%s", rel->columns[p->match[k]].name);
      else
        snprintf(s.to, sizeof s.to, "_odsync_renaming_%d", k);
      if (push(p, &cap, s)) goto oom;
      p->renames++;
      snprintf(name[k], sizeof name[k], "%s", s.to);
    }
  /* Adds: relation columns no table column is. */
  for (int i = 0; i < rel->ncolumns; i++) {
    bool have = false;
    for (int k = 0; k < n && !have; k++) have = p->match[k] == i;
    if (have) continue;
    if (push(p, &cap, (od_plan_step){.kind = OD_PLAN_ADD, .tcol = -1, .rcol = i})) goto oom;
    p->adds++;
  }
  free(name);
  return OD_OK;
oom:
  free(name);
  od_schema_plan_free(p);
  return OD_ENOMEM;
}

void od_schema_plan_free(od_schema_plan *p) {
  free(p->match);
  free(p->drop);
  free(p->steps);
  memset(p, 0, sizeof *p);
}
