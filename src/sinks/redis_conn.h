/* sinks/redis_conn.h — the Redis sink's connection: plain TCP or TLS, one interface.
 *
 * hiredis 0.14 (Debian's) has no TLS, so the connection is odsync's own: a TCP socket, wrapped
 * with OpenSSL when `tls` is set (verify-full: the server's chain against the CA file, its name
 * against server_name or host; an optional client certificate for `tls-auth-clients`). hiredis
 * supplies the protocol pieces only: commands are formatted with redisFormatCommandArgv into the
 * output buffer, replies are parsed by a redisReader. Both transports pipeline the same way:
 * appended commands are buffered, written out when the buffer passes a bound or a reply is wanted.
 *
 * Owns: the socket, the SSL objects, the output buffer, the reader. Never touches: config parsing
 * (the caller passes values), the log; error texts name the step and never hold a password.
 */
#ifndef ODSYNC_SINKS_REDIS_CONN_H
#define ODSYNC_SINKS_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct rd_tls {
  const char *ca_file;     /* PEM CA bundle the server's chain must verify against; NULL: the system's */
  const char *cert_file;   /* client certificate (PEM), or NULL */
  const char *key_file;    /* its key (PEM), or NULL */
  const char *server_name; /* name checked against the certificate (and sent as SNI); NULL: the host */
} rd_tls;

typedef struct rd_conn rd_conn;

/* Connect (and handshake when tls is not NULL) within timeout_ms. On failure NULL, and errbuf says
 * what failed ("TLS handshake: certificate verify failed: hostname mismatch ..."). */
rd_conn *rd_conn_open(const char *host, int port, long timeout_ms, const rd_tls *tls, char *errbuf, size_t size);
void rd_conn_free(rd_conn *c);
/* Format and buffer one command. 0, or -1 (out of memory). */
int rd_conn_append(rd_conn *c, int argc, const char **argv, const size_t *argvlen);
/* Bytes buffered and not yet written. */
size_t rd_conn_pending(const rd_conn *c);
/* Write out everything buffered. 0, or -1 (see rd_conn_errstr). */
int rd_conn_flush(rd_conn *c);
/* The next reply (flushes first); 0 with *out set (free with freeReplyObject), or -1. */
int rd_conn_get_reply(rd_conn *c, redisReply **out);
/* append + get_reply; NULL on a connection error. */
redisReply *rd_conn_command(rd_conn *c, int argc, const char **argv, const size_t *argvlen);
/* What the last failure was ("connection lost", "timed out after 30000 ms", an OpenSSL reason). */
const char *rd_conn_errstr(const rd_conn *c);
bool rd_conn_is_tls(const rd_conn *c);

#endif
