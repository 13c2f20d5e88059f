/* clickhouse_http.c — see clickhouse_http.h. */
#include "sinks/clickhouse_http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  od_sqlbuf *b = ud;
  size_t n = size * nmemb;
  od_sqlbuf_addn(b, ptr, n);
  return b->oom ? 0 : n;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int ch_http_open(ch_http *h, const ch_http_options *opt, od_error *err) {
  memset(h, 0, sizeof *h);
  pthread_once(&curl_once, curl_init_once);
  const char *url = opt->url;
  const char *hostpart = strstr(url, "://");
  hostpart = hostpart ? hostpart + 3 : url;
  size_t hl = strcspn(hostpart, "/?");
  char name[300];
  snprintf(name, sizeof name, "%.*s/%s", (int)(hl > 200 ? 200 : hl), hostpart, opt->database);
  h->name = strdup(name);
  size_t ul = strlen(url);
  h->url = malloc(ul + 2);
  if (h->url) {
    memcpy(h->url, url, ul + 1);
    if (ul == 0 || url[ul - 1] != '/') strcat(h->url, "/");
  }
  h->user = strdup(opt->user ? opt->user : "default");
  h->password = dup_or_null(opt->password);
  h->database = strdup(opt->database);
  h->gzip = opt->gzip;
  h->timeout_ms = opt->timeout_ms;
  h->curl = curl_easy_init();
  if (!h->name || !h->url || !h->user || (opt->password && !h->password) || !h->database || !h->curl) {
    ch_http_close(h);
    return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: out of memory", name);
  }
  CURL *c = h->curl;
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, opt->timeout_ms);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &h->resp);
  curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
  curl_easy_setopt(c, CURLOPT_USERNAME, h->user);
  curl_easy_setopt(c, CURLOPT_PASSWORD, h->password ? h->password : "");
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, opt->tls_verify ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, opt->tls_verify ? 2L : 0L);
  if (opt->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, opt->ca_file); /* libcurl copies it */
  if (h->gzip) curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
  return OD_OK;
}

void ch_http_close(ch_http *h) {
  if (h->curl) curl_easy_cleanup(h->curl);
  if (h->password) memset(h->password, 0, strlen(h->password));
  free(h->password);
  free(h->user);
  free(h->url);
  free(h->database);
  free(h->name);
  free(h->zbuf);
  od_sqlbuf_free(&h->resp);
  od_sqlbuf_free(&h->url_buf);
  memset(h, 0, sizeof *h);
}

/* gzip `len` bytes of `data` into h->zbuf; returns the compressed size, or 0 on failure. */
static size_t gzip_body(ch_http *h, const char *data, size_t len) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
  size_t need = deflateBound(&z, (uLong)len) + 32;
  if (need > h->zcap) {
    unsigned char *nb = realloc(h->zbuf, need);
    if (!nb) {
      deflateEnd(&z);
      return 0;
    }
    h->zbuf = nb;
    h->zcap = need;
  }
  z.next_in = (Bytef *)data;
  z.avail_in = (uInt)len;
  z.next_out = h->zbuf;
  z.avail_out = (uInt)h->zcap;
  int zr = deflate(&z, Z_FINISH);
  size_t out = zr == Z_STREAM_END ? z.total_out : 0;
  deflateEnd(&z);
  return out;
}

/* ClickHouse exception codes that a later attempt may not meet (server overloaded, restarting,
 * network, the status of an insert unknown). */
static bool transient_code(int code) {
  static const int codes[] = {159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 319, 394, 425};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (codes[i] == code) return true;
  return false;
}

/* The server's message, shortened for an error: its first line, at most 300 bytes. */
static void short_message(const ch_http *h, char *out, size_t n) {
  const char *m = h->resp.p ? h->resp.p : "";
  size_t l = strcspn(m, "\n");
  if (l > 300) l = 300;
  snprintf(out, n, "%.*s", (int)l, m);
}

int ch_http_exec(ch_http *h, const char *stmt, const char *body, size_t len, const char *what, od_error *err) {
  CURL *c = h->curl;
  od_sqlbuf_reset(&h->resp);
  od_sqlbuf_reset(&h->url_buf);
  char *esc = curl_easy_escape(c, h->database, 0);
  od_sqlbuf_addf(&h->url_buf, "%s?database=%s", h->url, esc ? esc : "");
  curl_free(esc);
  if (h->gzip) od_sqlbuf_add(&h->url_buf, "&enable_http_compression=1");
  /* A query's answer is buffered by the server until the query ends, so an exception raised after
   * the first rows still comes as a non-200 status (an insert answers only at its end anyway). */
  if (!body) od_sqlbuf_add(&h->url_buf, "&wait_end_of_query=1");
  const char *post = stmt;
  size_t post_len = strlen(stmt);
  struct curl_slist *hdr = NULL;
  if (body) {
    char *q = curl_easy_escape(c, stmt, 0);
    if (!q) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: %s: out of memory", h->name, what);
    od_sqlbuf_addf(&h->url_buf, "&query=%s", q);
    curl_free(q);
    post = body;
    post_len = len;
    h->bytes_raw += len;
    if (h->gzip && len > 0) {
      size_t zl = gzip_body(h, body, len);
      if (!zl) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: %s: cannot compress the data", h->name, what);
      post = (const char *)h->zbuf;
      post_len = zl;
      hdr = curl_slist_append(hdr, "Content-Encoding: gzip");
    }
  }
  if (h->url_buf.oom) return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: %s: out of memory", h->name, what);
  hdr = curl_slist_append(hdr, "Content-Type: text/plain; charset=utf-8");
  hdr = curl_slist_append(hdr, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, h->url_buf.p);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_len);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
  h->errbuf[0] = '\0';
  CURLcode cr = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
  curl_slist_free_all(hdr);
  h->requests++;
  h->bytes_sent += post_len;
  if (cr != CURLE_OK) {
    if (cr == CURLE_OUT_OF_MEMORY || h->resp.oom)
      return OD_FAIL(err, OD_ENOMEM, "clickhouse sink %s: %s: out of memory", h->name, what);
    return OD_FAIL_RETRY(err, OD_ECONNECT, "clickhouse sink %s: %s: %s", h->name, what,
                         h->errbuf[0] ? h->errbuf : curl_easy_strerror(cr));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    char msg[320];
    short_message(h, msg, sizeof msg);
    int code = 0;
    sscanf(msg, "Code: %d", &code);
    bool retry = status == 503 || status == 502 || status == 504 || transient_code(code);
    if (status == 401 || status == 403 || code == 192 || code == 193 || code == 516)
      return OD_FAIL(err, OD_ECONNECT, "clickhouse sink %s: %s: authentication failed for user %s (HTTP %ld): %s",
                     h->name, what, h->user, status, msg);
    return od_error_set(err, OD_ESINK, retry, __FILE__, __LINE__, "clickhouse sink %s: %s: HTTP %ld: %s", h->name,
                        what, status, msg);
  }
  return OD_OK;
}
