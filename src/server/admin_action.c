/* admin_action.c — see admin_action.h. */
#include "server/admin_action.h"

#include "core/log.h"

void od_admin_record_action(const char *who, const char *role, const char *method, const char *path, bool allowed,
                            const char *detail) {
  if (allowed)
    od_info("admin: allowed %s %s by %s (role %s)%s%s", method, path, who, role, detail ? ": " : "",
            detail ? detail : "");
  else
    od_warn("admin: denied %s %s by %s (role %s)%s%s", method, path, who, role, detail ? ": " : "",
            detail ? detail : "");
}
