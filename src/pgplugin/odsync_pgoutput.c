/* odsync_pgoutput.c — a PostgreSQL logical decoding output plugin: PostgreSQL's own pgoutput, with
 * the row changes of transactions that carry a replication origin left out on request.
 *
 * Why (docs/MULTI_MASTER.md, "The echo"): in a mesh every row a mesh sink applies on node B is decoded
 * by B's walsender and sent to the odsync pipeline B → A, which drops it (its transaction carries
 * the origin odsync_A). PostgreSQL 15's pgoutput has no origin filter, and the logical decoding
 * filter_by_origin callback would drop too much: decode.c then forgets the whole transaction (no
 * Begin, no Commit, no Origin message) and every logical message written under an origin, while
 * odsync builds its version vectors from exactly those (the Origin message and the "odsync.hlc"
 * message of each applied transaction).
 *
 * What it does: loads pgoutput (load_external_function) and takes its callbacks unchanged, except
 *   startup   — removes the option `odsync_origin` ('none': leave out the changes of transactions
 *               with an origin; 'any', the default: pgoutput as is) from the option list before
 *               pgoutput parses it (pgoutput refuses options it does not know);
 *   change, truncate (and their streaming forms) — return without calling pgoutput for a change of
 *               such a transaction when 'none' was asked.
 * Begin, Commit, the Origin message, Relation messages of the changes that are sent and logical
 * messages go through pgoutput untouched, so the stream is pgoutput's protocol byte for byte: in
 * PostgreSQL 15 pgoutput sends a transaction's Begin (and Origin) lazily before its first change or
 * transactional message, so a mesh transaction (its "odsync.hlc" message) still arrives as Begin,
 * Origin, Message, Commit; a transaction with an origin and no message arrives as nothing at all.
 *
 * Never touches: pgoutput's private state (ctx->output_plugin_private is pgoutput's), the slot,
 * anything on disk. The one piece of state, the option of the decoding context that runs now, is a
 * backend-local static: a backend runs one decoding context at a time (a walsender streams one slot;
 * the SQL functions create, use and free theirs within one call), and every startup sets it anew.
 */
#include "postgres.h"

#include "commands/defrem.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "replication/reorderbuffer.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

#define OPTION_NAME "odsync_origin"

typedef void (*plugin_init_fn)(OutputPluginCallbacks *cb);

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static OutputPluginCallbacks inner; /* pgoutput's callbacks, filled once per backend */
static bool skip_origin;            /* the running decoding context asked odsync_origin 'none' */

static void wrap_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init) {
  MemoryContext old = MemoryContextSwitchTo(ctx->context);
  List *rest = NIL;
  ListCell *lc;
  skip_origin = false;
  foreach (lc, ctx->output_plugin_options) {
    DefElem *d = (DefElem *)lfirst(lc);
    if (strcmp(d->defname, OPTION_NAME) != 0) {
      rest = lappend(rest, d);
      continue;
    }
    char *v = d->arg ? defGetString(d) : "";
    if (pg_strcasecmp(v, "none") == 0)
      skip_origin = true;
    else if (pg_strcasecmp(v, "any") != 0)
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                      errmsg("odsync_pgoutput: invalid value \"%s\" for option %s", v, OPTION_NAME),
                      errhint("Use 'none' (leave out the changes of transactions with a replication origin) or "
                              "'any' (send everything, as pgoutput).")));
  }
  ctx->output_plugin_options = rest;
  MemoryContextSwitchTo(old);
  inner.startup_cb(ctx, opt, is_init);
}

static void wrap_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
                        ReorderBufferChange *change) {
  if (skip_origin && txn->origin_id != InvalidRepOriginId) return;
  inner.change_cb(ctx, txn, rel, change);
}

static void wrap_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations, Relation relations[],
                          ReorderBufferChange *change) {
  if (skip_origin && txn->origin_id != InvalidRepOriginId) return;
  inner.truncate_cb(ctx, txn, nrelations, relations, change);
}

/* A streamed (in-progress) transaction has no origin of its own yet: each change carries the
 * origin of the session that wrote it. */
static void wrap_stream_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
                               ReorderBufferChange *change) {
  if (skip_origin && change->origin_id != InvalidRepOriginId) return;
  inner.stream_change_cb(ctx, txn, rel, change);
}

static void wrap_stream_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
                                 Relation relations[], ReorderBufferChange *change) {
  if (skip_origin && change->origin_id != InvalidRepOriginId) return;
  inner.stream_truncate_cb(ctx, txn, nrelations, relations, change);
}

void _PG_output_plugin_init(OutputPluginCallbacks *cb) {
  if (!inner.startup_cb) {
    plugin_init_fn init = (plugin_init_fn)load_external_function("pgoutput", "_PG_output_plugin_init", false, NULL);
    OutputPluginCallbacks got;
    if (!init)
      ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
                      errmsg("odsync_pgoutput: pgoutput's _PG_output_plugin_init was not found"),
                      errhint("odsync_pgoutput wraps PostgreSQL's pgoutput, which must be in $libdir.")));
    memset(&got, 0, sizeof got);
    init(&got);
    if (!got.startup_cb || !got.change_cb)
      ereport(ERROR, (errmsg("odsync_pgoutput: pgoutput registered no startup or change callback")));
    inner = got;
  }
  *cb = inner;
  cb->startup_cb = wrap_startup;
  cb->change_cb = wrap_change;
  if (inner.truncate_cb) cb->truncate_cb = wrap_truncate;
  if (inner.stream_change_cb) cb->stream_change_cb = wrap_stream_change;
  if (inner.stream_truncate_cb) cb->stream_truncate_cb = wrap_stream_truncate;
}
