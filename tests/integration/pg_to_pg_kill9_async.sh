#!/usr/bin/env bash
# pg_to_pg_kill9_async.sh — pg_to_pg_kill9.sh with the sink's synchronous_commit: off: SIGKILL/restart
# cycles under load while the sink's commits become durable after they return (the source is
# acknowledged only up to flushed commits; a new session reads a checkpoint it has flushed), then an
# exact row-for-row comparison. A crash of the sink's server itself: pg_sink_async_commit.sh.
KILL9_SINK_EXTRA="synchronous_commit: off" KILL9_NAME_SUFFIX=_async exec bash "$(dirname "${BASH_SOURCE[0]}")/pg_to_pg_kill9.sh"
