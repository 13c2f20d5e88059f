/* sink_contract.h — the contract every sink must keep, checked through od_sink_ops alone: positions
 * and their text form, commit vs commit_data vs rollback, marks (when declared), replays of
 * delivered changes, keyed and keyless changes, key changes, unchanged TOAST values, truncation, a
 * schema change, values of many types, and separate checkpoints per name. A new sink is tested by
 * adding one line (its config) to tests/integration/sink_contract.sh or a unit test.
 * Owns nothing between calls; never touches servers except through the sink.
 */
#ifndef ODSYNC_SINK_CONTRACT_H
#define ODSYNC_SINK_CONTRACT_H

#include <stdbool.h>

#include "odsync/sink.h"

typedef struct od_contract_env {
  const od_sink_ops *ops;
  /* Open an instance on the store under test with checkpoint name `name`. */
  int (*open)(void *ctx, const char *name, od_sink **out, od_error *err);
  /* Rows of sink table for source table public.<table> (-1: this harness cannot count; below -1:
   * the table could not be read, a failure). */
  long (*count_rows)(void *ctx, const char *table);
  void *ctx;
} od_contract_env;

/* Runs every check; report() is called once per check. Returns the number of failed checks. */
int od_sink_contract(const od_contract_env *env, void (*report)(void *rctx, bool ok, const char *check,
                                                                const char *detail),
                     void *rctx);

#endif
