/* sinks/redis_conn.c — see redis_conn.h. One read and one write primitive per transport (recv/send
 * or SSL_read/SSL_write), each waiting with poll() up to the timeout; everything above them is
 * shared. */
#include "sinks/redis_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct rd_conn {
  int fd;
  SSL_CTX *ctx; /* NULL: plain TCP */
  SSL *ssl;
  long timeout_ms;
  char *obuf;
  size_t olen, ocap;
  redisReader *reader;
  char err[256];
};

static void set_err(rd_conn *c, const char *what, const char *why) {
  snprintf(c->err, sizeof c->err, "%s: %s", what, why);
}

static void ssl_err(rd_conn *c, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[160] = "";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
  if (v != X509_V_OK)
    snprintf(c->err, sizeof c->err, "%s: certificate verify failed: %s", what, X509_verify_cert_error_string(v));
  else
    snprintf(c->err, sizeof c->err, "%s: %s%s", what, buf[0] ? buf : "connection closed by the server",
             strstr(buf, "certificate required") ? " (the server requires a client certificate: set tls_cert_file "
                                                   "and tls_key_file)" : "");
  ERR_clear_error();
}

/* Wait until fd is readable (in) or writable (!in); false on timeout or error (c->err set). */
static bool wait_fd(rd_conn *c, bool in, const char *what) {
  struct pollfd p = {.fd = c->fd, .events = in ? POLLIN : POLLOUT};
  for (;;) {
    int r = poll(&p, 1, (int)c->timeout_ms);
    if (r > 0) return true;
    if (r < 0 && errno == EINTR) continue;
    char why[64];
    snprintf(why, sizeof why, r == 0 ? "timed out after %ld ms" : "poll failed", c->timeout_ms);
    set_err(c, what, why);
    return false;
  }
}

/* Read some bytes: >0, or -1 (closed or failed; c->err set). */
static ssize_t xread(rd_conn *c, char *buf, size_t n) {
  for (;;) {
    if (c->ssl) {
      int r = SSL_read(c->ssl, buf, (int)n);
      if (r > 0) return r;
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!wait_fd(c, e == SSL_ERROR_WANT_READ, "reading")) return -1;
        continue;
      }
      if (e == SSL_ERROR_ZERO_RETURN) set_err(c, "reading", "connection closed by the server");
      else ssl_err(c, "reading (TLS)");
      return -1;
    }
    ssize_t r = recv(c->fd, buf, n, 0);
    if (r > 0) return r;
    if (r == 0) {
      set_err(c, "reading", "connection closed by the server");
      return -1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_fd(c, true, "reading")) return -1;
      continue;
    }
    set_err(c, "reading", strerror(errno));
    return -1;
  }
}

static int xwrite(rd_conn *c, const char *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    if (c->ssl) {
      int r = SSL_write(c->ssl, buf + done, (int)(n - done));
      if (r > 0) {
        done += (size_t)r;
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!wait_fd(c, e == SSL_ERROR_WANT_READ, "writing")) return -1;
        continue;
      }
      ssl_err(c, "writing (TLS)");
      return -1;
    }
    ssize_t r = send(c->fd, buf + done, n - done, MSG_NOSIGNAL);
    if (r >= 0) {
      done += (size_t)r;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_fd(c, false, "writing")) return -1;
      continue;
    }
    set_err(c, "writing", strerror(errno));
    return -1;
  }
  return 0;
}

static int tcp_connect(rd_conn *c, const char *host, int port) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  int gai = getaddrinfo(host, ps, &hints, &res);
  if (gai) {
    set_err(c, "resolving the host", gai_strerror(gai));
    return -1;
  }
  int last = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    c->fd = fd;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
        (errno == EINPROGRESS && wait_fd(c, false, "connecting"))) {
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
      if (soerr == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        freeaddrinfo(res);
        return 0;
      }
      last = soerr;
    } else if (errno != EINPROGRESS) {
      last = errno;
    }
    close(fd);
    c->fd = -1;
  }
  freeaddrinfo(res);
  if (last) set_err(c, "connecting", strerror(last));
  return -1;
}

static int tls_start(rd_conn *c, const char *host, const rd_tls *t) {
  const char *name = t->server_name ? t->server_name : host;
  c->ctx = SSL_CTX_new(TLS_client_method());
  if (!c->ctx) {
    ssl_err(c, "TLS setup");
    return -1;
  }
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  if (t->ca_file ? SSL_CTX_load_verify_locations(c->ctx, t->ca_file, NULL) != 1
                 : SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
    ssl_err(c, t->ca_file ? "TLS: reading tls_ca_file (a PEM CA certificate)" : "TLS: loading the system CA certificates");
    return -1;
  }
  if (t->cert_file && (SSL_CTX_use_certificate_chain_file(c->ctx, t->cert_file) != 1 ||
                       SSL_CTX_use_PrivateKey_file(c->ctx, t->key_file, SSL_FILETYPE_PEM) != 1 ||
                       SSL_CTX_check_private_key(c->ctx) != 1)) {
    ssl_err(c, "TLS: reading tls_cert_file/tls_key_file (a matching PEM certificate and key)");
    return -1;
  }
  c->ssl = SSL_new(c->ctx);
  if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
    ssl_err(c, "TLS setup");
    return -1;
  }
  /* verify-full: the chain, and the name (a DNS name, or an IP address when the name is one). */
  X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
  struct in6_addr a6;
  struct in_addr a4;
  bool ip = inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1;
  if (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1 : X509_VERIFY_PARAM_set1_host(vp, name, 0) != 1) {
    ssl_err(c, "TLS setup (server name)");
    return -1;
  }
  if (!ip) SSL_set_tlsext_host_name(c->ssl, name);
  for (;;) {
    int r = SSL_connect(c->ssl);
    if (r == 1) return 0;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (!wait_fd(c, e == SSL_ERROR_WANT_READ, "TLS handshake")) return -1;
      continue;
    }
    char what[200];
    snprintf(what, sizeof what, "TLS handshake (verify-full against %.80s for '%.60s')",
             t->ca_file ? t->ca_file : "the system CAs", name);
    ssl_err(c, what);
    return -1;
  }
}

rd_conn *rd_conn_open(const char *host, int port, long timeout_ms, const rd_tls *tls, char *errbuf, size_t size) {
  rd_conn *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(errbuf, size, "out of memory");
    return NULL;
  }
  c->fd = -1;
  c->timeout_ms = timeout_ms;
  c->reader = redisReaderCreate();
  if (!c->reader) set_err(c, "connecting", "out of memory");
  else if (tcp_connect(c, host, port) == 0 && (!tls || tls_start(c, host, tls) == 0)) return c;
  snprintf(errbuf, size, "%s", c->err[0] ? c->err : "connecting: failed");
  rd_conn_free(c);
  return NULL;
}

void rd_conn_free(rd_conn *c) {
  if (!c) return;
  if (c->ssl) SSL_free(c->ssl); /* no close_notify: the server drops an unfinished MULTI either way */
  if (c->ctx) SSL_CTX_free(c->ctx);
  if (c->fd >= 0) close(c->fd);
  if (c->reader) redisReaderFree(c->reader);
  free(c->obuf);
  free(c);
}

int rd_conn_append(rd_conn *c, int argc, const char **argv, const size_t *argvlen) {
  char *cmd = NULL;
  int n = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  if (n < 0 || !cmd) {
    set_err(c, "queueing a command", "out of memory");
    return -1;
  }
  if (c->olen + (size_t)n > c->ocap) {
    size_t cap = c->ocap ? c->ocap : 16384;
    while (cap < c->olen + (size_t)n) cap *= 2;
    char *p = realloc(c->obuf, cap);
    if (!p) {
      free(cmd);
      set_err(c, "queueing a command", "out of memory");
      return -1;
    }
    c->obuf = p;
    c->ocap = cap;
  }
  memcpy(c->obuf + c->olen, cmd, (size_t)n);
  c->olen += (size_t)n;
  free(cmd);
  return 0;
}

size_t rd_conn_pending(const rd_conn *c) { return c->olen; }

int rd_conn_flush(rd_conn *c) {
  if (!c->olen) return 0;
  int rc = xwrite(c, c->obuf, c->olen);
  c->olen = 0;
  return rc;
}

int rd_conn_get_reply(rd_conn *c, redisReply **out) {
  *out = NULL;
  if (rd_conn_flush(c)) return -1;
  for (;;) {
    void *r = NULL;
    if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
      set_err(c, "reading a reply", c->reader->errstr[0] ? c->reader->errstr : "protocol error");
      return -1;
    }
    if (r) {
      *out = r;
      return 0;
    }
    char buf[16384];
    ssize_t n = xread(c, buf, sizeof buf);
    if (n < 0) return -1;
    if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
      set_err(c, "reading a reply", "protocol error");
      return -1;
    }
  }
}

redisReply *rd_conn_command(rd_conn *c, int argc, const char **argv, const size_t *argvlen) {
  redisReply *r = NULL;
  if (rd_conn_append(c, argc, argv, argvlen) || rd_conn_get_reply(c, &r)) return NULL;
  return r;
}

const char *rd_conn_errstr(const rd_conn *c) { return c && c->err[0] ? c->err : "connection lost"; }

bool rd_conn_is_tls(const rd_conn *c) { return c->ssl != NULL; }
