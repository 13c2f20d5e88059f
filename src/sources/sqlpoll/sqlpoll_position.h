/* sources/sqlpoll/sqlpoll_position.h — the position of `type: sqlite_poll`: the watermark of every
 * polled table (in the order of source.tables), a signed 64-bit integer each, at most
 * SQLPOLL_MAX_TABLES. Text form "sqlpoll:12,0,57". Watermarks never decrease and a cycle that
 * delivers something raises at least one, so positions are ordered by the sum of the watermarks
 * (then table by table): a cycle is the transaction [before, after).
 * Owns nothing. Never touches I/O.
 */
#ifndef ODSYNC_SQLPOLL_POSITION_H
#define ODSYNC_SQLPOLL_POSITION_H

#include "odsync/position.h"

#define SQLPOLL_MAX_TABLES 11 /* 1 + 11 * 8 bytes <= OD_POS_MAX */

extern const od_pos_kind od_sqlpoll_position;

od_pos od_sqlpoll_pos(int n, const int64_t *wm);
/* The watermarks of p (n entries); -1 when p is not a sqlpoll position. */
int od_sqlpoll_get(const od_pos *p, int64_t *wm, int max);

#endif
