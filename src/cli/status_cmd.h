/* status_cmd.h — `odsync status`: print a running odsync's status table (see status_cmd.c). */
#ifndef ODSYNC_STATUS_CMD_H
#define ODSYNC_STATUS_CMD_H

/* `url` (http://HOST:PORT) wins over the config's admin.listen. Returns the exit status. */
int od_cli_status(const char *config_path, const char *url);

#endif
