/* triggers_cmd.c — `odsync install-triggers` / `odsync uninstall-triggers`: for each pipeline with a
 * postgres_trigger or mariadb_trigger source, create or remove its change table and triggers (odsync/capture_admin.h).
 * Owns only the loaded config for the call. */
#include "cli/triggers_cmd.h"

#include <stdio.h>
#include <string.h>

#include "odsync/capture_admin.h"
#include "odsync/config.h"

int od_cli_triggers(const char *config_path, const char *const *only, int nonly, bool install) {
  od_config *cfg;
  od_error err;
  od_error_clear(&err);
  if (od_config_load(config_path, &cfg, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    return 2;
  }
  int done = 0, failed = 0;
  for (int i = 0; i < cfg->npipelines; i++) {
    const od_pipeline_config *pc = &cfg->pipelines[i];
    bool sel = nonly == 0;
    for (int k = 0; k < nonly; k++) sel = sel || !strcmp(only[k], pc->name);
    if (!sel || !pc->source.type) continue;
    bool pg = !strcmp(pc->source.type, "postgres_trigger"), my = !strcmp(pc->source.type, "mariadb_trigger");
    if (!pg && !my) continue;
    char summary[700];
    od_error_clear(&err);
    if ((pg ? od_triggers_admin : od_mytriggers_admin)(&pc->source, pc->name, install, summary, sizeof summary, &err)) {
      fprintf(stderr, "odsync: %s\n", err.msg);
      failed++;
    } else {
      printf("%s\n", summary);
    }
    done++;
  }
  od_config_free(cfg);
  if (!done) {
    fprintf(stderr, "odsync: no pipeline of %s has a source of type postgres_trigger or mariadb_trigger\n", config_path);
    return 2;
  }
  return failed ? 1 : 0;
}
