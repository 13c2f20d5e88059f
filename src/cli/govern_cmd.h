/* govern_cmd.h — the governance commands: `odsync audit verify`, `odsync lineage TABLE`,
 * `odsync scan` (PII). Owns their argument parsing and output; the work is the core's
 * (core/audit.h, core/lineage.h, core/pii_scan.h). Never touches running pipelines. */
#ifndef ODSYNC_CLI_GOVERN_CMD_H
#define ODSYNC_CLI_GOVERN_CMD_H

/* argv[1] is the command; returns the process exit status. */
int od_cli_audit(int argc, char **argv);
int od_cli_lineage(int argc, char **argv);
int od_cli_scan(int argc, char **argv);

#endif
