/* admin_action.c — see admin_action.h: a log line and an `admin_request` record in the audit
 * log's process chain (<state_dir>/audit/odsync-process; the path is a field, never a file name,
 * so a request naming a pipeline that does not exist cannot create a log of its own). */
#include "server/admin_action.h"

#include "common/sqlbuf.h"
#include "core/audit.h"
#include "core/log.h"

void od_admin_record_action(const char *who, const char *role, const char *method, const char *path, bool allowed,
                            const char *detail) {
  if (allowed)
    od_info("admin: allowed %s %s by %s (role %s)%s%s", method, path, who, role, detail ? ": " : "",
            detail ? detail : "");
  else
    od_warn("admin: denied %s %s by %s (role %s)%s%s", method, path, who, role, detail ? ": " : "",
            detail ? detail : "");
  od_sqlbuf b = {0};
  od_sqlbuf_add(&b, "\"who\":");
  od_audit_json_str(&b, who);
  od_sqlbuf_add(&b, ",\"role\":");
  od_audit_json_str(&b, role);
  od_sqlbuf_add(&b, ",\"method\":");
  od_audit_json_str(&b, method);
  od_sqlbuf_add(&b, ",\"path\":");
  od_audit_json_str(&b, path);
  od_sqlbuf_addf(&b, ",\"allowed\":%s,\"detail\":", allowed ? "true" : "false");
  od_audit_json_str(&b, detail);
  if (!b.oom) od_audit_record(NULL, "admin_request", b.p);
  od_sqlbuf_free(&b);
}
