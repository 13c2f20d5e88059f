/* sources/poll/trig_gate.h — the advisory lock key shared by the capture objects (trig_install.c:
 * writers take it SHARED at commit, around taking a commit sequence number) and the reader
 * (trig_source.c: EXCLUSIVE for an instant, to learn the highest sequence number whose transactions
 * have all ended). Owns nothing. */
#ifndef ODSYNC_POLL_TRIG_GATE_H
#define ODSYNC_POLL_TRIG_GATE_H

#define TRIG_LOCK_KEY "111100115121110099" /* "odsync" in ASCII codes */

#endif
