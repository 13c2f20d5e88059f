/* core/config_diff.h — what differs between two loaded configurations (config reload).
 *
 * A pipeline's *effective* configuration is everything that decides what it does: its source,
 * sinks, transforms and options, plus the root settings it uses (state_dir, encryption keys).
 * Positions in the file (line, col) and other pipelines are not part of it, so moving a pipeline
 * in the file or editing another one leaves it "unchanged". Comparison is by SHA-256 digests of
 * a canonical form; a digest is never shown (it covers resolved secrets).
 * Owns: nothing (pure functions). Never touches: files, pipelines, the log.
 */
#ifndef ODSYNC_CORE_CONFIG_DIFF_H
#define ODSYNC_CORE_CONFIG_DIFF_H

#include <stdbool.h>
#include <stddef.h>

#include "odsync/config.h"

/* Parts of a pipeline's effective configuration, in the order od_config_pipeline_diff names them. */
enum {
  OD_CFGPART_SOURCE = 1 << 0,     /* source: */
  OD_CFGPART_SINKS = 1 << 1,      /* sink: / sinks: (with their own transforms and spools) */
  OD_CFGPART_TRANSFORMS = 1 << 2, /* the pipeline's transforms: */
  OD_CFGPART_OPTIONS = 1 << 3,    /* batch, queue, consistency, alerts, poison, breaker, pii, ... */
  OD_CFGPART_ROOT = 1 << 4,       /* state_dir or encryption keys */
};

/* Which parts differ between pipeline a (of root ra) and b (of root rb); 0: unchanged. */
int od_config_pipeline_diff(const od_config *ra, const od_pipeline_config *a, const od_config *rb,
                            const od_pipeline_config *b);
/* "source, sinks" for a mask of parts (into out; never a value). */
void od_config_parts_text(int parts, char *out, size_t size);

/* The admin section: true when the credentials (tokens, jwt) differ; *listen_changed when the
 * listen address or the HTTPS certificate files differ (those need a restart). */
bool od_config_admin_auth_changed(const od_admin_config *a, const od_admin_config *b, bool *listen_changed);

/* The pipeline named `name` of cfg, or NULL. */
const od_pipeline_config *od_config_pipeline_named(const od_config *cfg, const char *name);

#endif
