/* Unit tests for the PostgreSQL sink's account of durable commits (postgres_durable.c, the sink's
 * synchronous_commit: off): a commit is reported durable only once the server's flush position
 * reaches its WAL position; the list of pending commits stays bounded and, when it drops entries,
 * only answers later, never past what is flushed. */
#include "sinks/postgres_internal.h"
#include "test.h"

static const od_pos_kind kind = {.name = "t"};

static uint64_t durable_of(pgs_sink *s) {
  od_pos out;
  od_error err;
  CHECK_INT(pgs_durable(&s->base, false, &out, &err), OD_OK);
  return od_pos_to_u64(&out);
}

/* A commit of checkpoint `pos` whose COMMIT left the server's WAL at `lsn`, the server having
 * flushed up to `flushed` (what the commit's pipeline reads). */
static void commit(pgs_sink *s, uint64_t pos, uint64_t lsn, uint64_t flushed) {
  s->dur.commit_lsn = lsn;
  if (flushed > s->dur.flushed) s->dur.flushed = flushed;
  od_pos p = od_pos_from_u64(&kind, pos);
  pgs_durable_committed(s, &p);
}

TEST(durable_only_once_flushed) {
  pgs_sink s = {0};
  s.async_commit = true;
  commit(&s, 10, 1000, 0);
  commit(&s, 20, 2000, 0);
  CHECK_INT(durable_of(&s), 0); /* none yet */
  commit(&s, 30, 3000, 1999); /* flushed short of the second commit */
  CHECK_INT(durable_of(&s), 10);
  commit(&s, 40, 4000, 3000);
  CHECK_INT(durable_of(&s), 30);
  CHECK_INT(s.dur.n, 1);
}

TEST(bounded_list_answers_later_never_wrong) {
  pgs_sink s = {0};
  s.async_commit = true;
  for (uint64_t i = 1; i <= 200; i++) {
    commit(&s, i, 100 * i, 0);
    CHECK(s.dur.n <= PGS_DURABLE_MAX);
  }
  CHECK_INT(durable_of(&s), 0);
  /* The server flushed through commit 150: the answer is at most 150, and close to it. */
  commit(&s, 201, 100 * 201, 100 * 150);
  uint64_t d = durable_of(&s);
  CHECK(d <= 150);
  CHECK(d >= 140);
  /* Everything flushed: the last commit. */
  commit(&s, 202, 100 * 202, 100 * 202);
  CHECK_INT(durable_of(&s), 202);
  CHECK_INT(s.dur.n, 0);
}

TEST(unknown_position_waits_for_a_forced_flush) {
  pgs_sink s = {0};
  s.async_commit = true;
  commit(&s, 10, 0, 0); /* no WAL position came back */
  commit(&s, 20, 2000, 1u << 30);
  CHECK_INT(durable_of(&s), 0);
}

TEST(synchronous_commits_are_durable_at_once) {
  pgs_sink s = {0};
  commit(&s, 10, 0, 0);
  CHECK_INT(durable_of(&s), 10);
  commit(&s, 20, 0, 0);
  CHECK_INT(durable_of(&s), 20);
}
