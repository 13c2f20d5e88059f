/* sources/poll/poll_position.h — the positions of the query-based PostgreSQL sources.
 *
 *  "pgpoll": a poll horizon, one mode byte ('x': a full 64-bit transaction id, xid8; 't': microseconds
 *            since the Unix epoch of the source's clock) and the value, 8 bytes big-endian. Text form
 *            "xmin:<xid8>" or "ts:<µs>". A poll cycle that read the rows whose watermark lies in
 *            [h0, h1) is the transaction [pos(h0), pos(h1)). Mode 'i' ("load:<k>") numbers the chunk
 *            transactions of an initial load; bytewise it sorts below every horizon ('i' < 't' < 'x'),
 *            and the load's last transaction ends at the first horizon. A reconciliation that runs
 *            while the horizon h stands still delivers its deletes in [h(+k), h+(k+1)): the same
 *            bytes followed by an 8-byte sequence k+1 (text "xmin:<xid8>+<k+1>"), which sort after
 *            h and before any later horizon. A chunk of an initial load that can be resumed ends at
 *            'i', k, the load's horizon (8 bytes), the table's index (2 bytes) and the last delivered
 *            key (its parts' text forms, each NUL-ended; at most OD_PGPOLL_LOAD_KEY_MAX bytes), text
 *            "load:<k>@<horizon>/<table>/<key hex>"; it sorts after "load:<k>" and before "load:<k+1>".
 *  "pgtrig": the commit sequence number of a captured transaction (odsync.txns.seq); the
 *            transaction with sequence s is [s, s + 1). Text form: the decimal number.
 * Owns nothing. Never touches I/O.
 */
#ifndef ODSYNC_POLL_POSITION_H
#define ODSYNC_POLL_POSITION_H

#include "odsync/position.h"

extern const od_pos_kind od_pgpoll_position;
extern const od_pos_kind od_pgtrig_position;

od_pos od_pgpoll_pos(char mode, uint64_t v);
#define OD_PGPOLL_LOAD_KEY_MAX (OD_POS_MAX - 19)
/* keylen 0 or more than OD_PGPOLL_LOAD_KEY_MAX: the plain od_pgpoll_pos('i', seq) (not resumable). */
od_pos od_pgpoll_load_pos(uint64_t seq, uint64_t horizon, uint16_t table, const char *key, size_t keylen);
bool od_pgpoll_load_resume(const od_pos *p, uint64_t *horizon, uint16_t *table, const uint8_t **key, size_t *keylen);
od_pos od_pgpoll_pos_seq(char mode, uint64_t v, uint64_t seq); /* seq 0: od_pgpoll_pos */
uint64_t od_pgpoll_seq(const od_pos *p);                         /* 0 for a plain horizon */
/* The mode byte and value of a pgpoll position; false when p is not one. */
bool od_pgpoll_get(const od_pos *p, char *mode, uint64_t *v);

#endif
