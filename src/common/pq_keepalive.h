/* common/pq_keepalive.h — TCP keepalive defaults for every libpq connection odsync opens.
 *
 * Owns: nothing but the four libpq keywords and their values, spliced into a connection's keyword
 * list BEFORE "dbname" (with expand_dbname, a later key wins, so a user's own keepalives_* in the
 * dsn override these). A peer that vanished without a FIN/RST (a cut link, a dead host) is noticed
 * after idle 30 s + 3 probes 10 s apart, instead of never on an idle socket.
 * Never touches: libpq itself (no include needed), the rest of the connection string.
 */
#ifndef OD_COMMON_PQ_KEEPALIVE_H
#define OD_COMMON_PQ_KEEPALIVE_H

#define OD_PQ_KEEPALIVE_KEYS "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"
#define OD_PQ_KEEPALIVE_VALS "1", "30", "10", "3"

#endif
