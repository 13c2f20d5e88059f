/* admin_action.h — the one place where admin API access decisions are recorded.
 *
 * Every denied request (any path) and every allowed mutating request (POST) of the admin server
 * calls od_admin_record_action exactly once, from one call site in admin.c: a log line (info when
 * allowed, warn when denied) and an `admin_request` record in the hash-chained audit log's process
 * chain (core/audit.h, docs/AUDIT.md).
 * Owns: nothing. Never touches: credentials (callers pass who = "token#N" / "jwt:<sub>" /
 * "anonymous", never a token), the pipelines.
 */
#ifndef ODSYNC_ADMIN_ACTION_H
#define ODSYNC_ADMIN_ACTION_H

#include <stdbool.h>

/* who: the caller ("token#0@127.0.0.1"); role: its role name ("none" when unauthenticated);
 * method, path: the request (path without the query string); allowed: the decision; detail:
 * why it was denied, or what was done ("paused", "snapshot requested: public.items"); may be NULL. */
void od_admin_record_action(const char *who, const char *role, const char *method, const char *path, bool allowed,
                            const char *detail);

#endif
