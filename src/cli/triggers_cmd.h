/* triggers_cmd.h — `odsync install-triggers` / `odsync uninstall-triggers` (see triggers_cmd.c). */
#ifndef ODSYNC_TRIGGERS_CMD_H
#define ODSYNC_TRIGGERS_CMD_H

#include <stdbool.h>

/* For every pipeline of the config (or those named in only[0..nonly)) whose source is
 * postgres_trigger. Returns the exit status (0 ok, 1 a pipeline failed, 2 config error or none). */
int od_cli_triggers(const char *config_path, const char *const *only, int nonly, bool install);

#endif
