/* otlp.c — see otlp.h. */
#include "server/otlp.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

#define FLUSH_AT 64    /* batches waiting that wake the exporter before its second is up */
#define SEND_MAX 256   /* batches per POST */

struct od_otlp {
  char *endpoint;      /* owned copy */
  bool secret;
  char *service;       /* owned copy */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  od_trace_batch *ring; /* OD_OTLP_QUEUE */
  int head, len;
  bool stop;
  pthread_t thread;
  bool started;
  uint64_t rng;
  od_metric *exported, *dropped, *failed;
};

/* ---- encoding ------------------------------------------------------------------------------ */

static void hex(od_sqlbuf *o, uint64_t v) { od_sqlbuf_addf(o, "%016llx", (unsigned long long)v); }

static void jstr(od_sqlbuf *o, const char *s) {
  od_sqlbuf_add(o, "\"");
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') od_sqlbuf_addf(o, "\\%c", *c);
    else if (*c < 0x20) od_sqlbuf_addf(o, "\\u%04x", *c);
    else {
      char ch[2] = {(char)*c, 0};
      od_sqlbuf_add(o, ch);
    }
  }
  od_sqlbuf_add(o, "\"");
}

static void attr_str(od_sqlbuf *o, bool first, const char *key, const char *v) {
  od_sqlbuf_addf(o, "%s{\"key\":\"%s\",\"value\":{\"stringValue\":", first ? "" : ",", key);
  jstr(o, v);
  od_sqlbuf_add(o, "}}");
}

static void attr_int(od_sqlbuf *o, const char *key, uint64_t v) {
  od_sqlbuf_addf(o, ",{\"key\":\"%s\",\"value\":{\"intValue\":\"%llu\"}}", key, (unsigned long long)v);
}

/* One span; parent 0: a root. Times: monotonic µs. */
static void span(od_sqlbuf *o, bool first, uint64_t trace_hi, uint64_t trace_lo, uint64_t id, uint64_t parent,
                 const char *name, int64_t start, int64_t end, int64_t offset, const od_trace_batch *attrs) {
  if (end < start) end = start;
  od_sqlbuf_add(o, first ? "{\"traceId\":\"" : ",{\"traceId\":\"");
  hex(o, trace_hi);
  hex(o, trace_lo);
  od_sqlbuf_add(o, "\",\"spanId\":\"");
  hex(o, id);
  od_sqlbuf_add(o, "\"");
  if (parent) {
    od_sqlbuf_add(o, ",\"parentSpanId\":\"");
    hex(o, parent);
    od_sqlbuf_add(o, "\"");
  }
  od_sqlbuf_addf(o, ",\"name\":\"%s\",\"kind\":1,\"startTimeUnixNano\":\"%lld000\",\"endTimeUnixNano\":\"%lld000\"",
                 name, (long long)(start + offset), (long long)(end + offset));
  if (attrs) {
    od_sqlbuf_add(o, ",\"attributes\":[");
    attr_str(o, true, "odsync.pipeline", attrs->pipeline);
    attr_str(o, false, "odsync.sink", attrs->sink);
    attr_int(o, "odsync.rows", attrs->rows);
    attr_int(o, "odsync.transactions", attrs->txns);
    attr_int(o, "odsync.source.txn_id", attrs->xid);
    attr_str(o, false, "odsync.position.end", attrs->end_pos);
    if (attrs->correlation_first[0]) {
      attr_str(o, false, "odsync.correlation_id.first", attrs->correlation_first);
      attr_str(o, false, "odsync.correlation_id.last", attrs->correlation_last);
    }
    od_sqlbuf_add(o, "]");
  }
  od_sqlbuf_add(o, ",\"status\":{}}");
}

int od_otlp_encode(const od_trace_batch *b, int n, const char *service, int64_t offset,
                   uint64_t (*rand64)(void *ctx), void *ctx, od_sqlbuf *o) {
  od_sqlbuf_add(o, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
  attr_str(o, true, "service.name", service);
  od_sqlbuf_add(o, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"odsync\",\"version\":\"" ODSYNC_VERSION "\"},\"spans\":[");
  for (int i = 0; i < n; i++) {
    const od_trace_batch *t = &b[i];
    uint64_t hi = rand64(ctx), lo = rand64(ctx) | 1, root = rand64(ctx) | 1;
    int64_t start = t->decode_start && t->decode_start < t->apply_start ? t->decode_start : t->apply_start;
    span(o, i == 0, hi, lo, root, 0, "odsync.batch", start, t->commit_end, offset, t);
    if (t->decode_start && t->decode_end) {
      span(o, false, hi, lo, rand64(ctx) | 1, root, "odsync.decode", t->decode_start, t->decode_end, offset, NULL);
      if (t->queue_end)
        span(o, false, hi, lo, rand64(ctx) | 1, root, "odsync.queue_wait", t->decode_end, t->queue_end, offset, NULL);
    }
    span(o, false, hi, lo, rand64(ctx) | 1, root, "odsync.sink.apply", t->apply_start, t->commit_start, offset, NULL);
    span(o, false, hi, lo, rand64(ctx) | 1, root, "odsync.sink.commit", t->commit_start, t->commit_end, offset, NULL);
  }
  od_sqlbuf_add(o, "]}]}]}");
  return o->oom ? -1 : 0;
}

/* ---- the exporter -------------------------------------------------------------------------- */

static uint64_t xorshift(void *ctx) {
  uint64_t *s = ctx;
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void hook(void *ctx, const od_trace_batch *b) {
  od_otlp *o = ctx;
  pthread_mutex_lock(&o->lock);
  if (o->len == OD_OTLP_QUEUE) {
    pthread_mutex_unlock(&o->lock);
    od_counter_add(o->dropped, 1);
    return;
  }
  o->ring[(o->head + o->len) % OD_OTLP_QUEUE] = *b;
  if (++o->len == FLUSH_AT) pthread_cond_signal(&o->cond);
  pthread_mutex_unlock(&o->lock);
}

static size_t discard(char *d, size_t s, size_t n, void *ctx) {
  (void)d;
  (void)ctx;
  return s * n;
}

static void send_batch(od_otlp *o, const od_trace_batch *b, int n) {
  od_sqlbuf body = {0};
  if (od_otlp_encode(b, n, o->service, od_now_us() - od_mono_us(), xorshift, &o->rng, &body)) {
    od_sqlbuf_free(&body);
    od_counter_add(o->failed, 1);
    return;
  }
  CURL *c = curl_easy_init();
  if (!c) {
    od_sqlbuf_free(&body);
    return;
  }
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  char cerr[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, o->endpoint);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.p);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body.len);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  od_sqlbuf_free(&body);
  if (rc == CURLE_OK && code >= 200 && code < 300) {
    od_counter_add(o->exported, (uint64_t)n);
    return;
  }
  od_counter_add(o->failed, 1);
  const char *where = o->secret ? "(secret URL)" : o->endpoint;
  if (rc != CURLE_OK)
    od_debug("tracing: export to %s failed: %s (%d batches dropped)", where, cerr[0] ? cerr : curl_easy_strerror(rc), n);
  else
    od_debug("tracing: %s answered HTTP %ld (%d batches dropped)", where, code, n);
}

static void *export_main(void *arg) {
  od_otlp *o = arg;
  od_trace_batch *out = malloc(sizeof *out * SEND_MAX);
  if (!out) return NULL;
  pthread_mutex_lock(&o->lock);
  for (;;) {
    if (!o->stop && o->len < FLUSH_AT) {
      struct timespec dl = od_deadline_ms(1000);
      pthread_cond_timedwait(&o->cond, &o->lock, &dl);
    }
    bool stopping = o->stop;
    int n = o->len < SEND_MAX ? o->len : SEND_MAX;
    for (int i = 0; i < n; i++) out[i] = o->ring[(o->head + i) % OD_OTLP_QUEUE];
    o->head = (o->head + n) % OD_OTLP_QUEUE;
    o->len -= n;
    pthread_mutex_unlock(&o->lock);
    if (n) send_batch(o, out, n); /* never under the lock */
    pthread_mutex_lock(&o->lock);
    if (stopping && !o->len) break;
    if (stopping && n == 0) break;
  }
  pthread_mutex_unlock(&o->lock);
  free(out);
  return NULL;
}

int od_otlp_start(const od_config *cfg, od_metrics *registry, od_otlp **out, od_error *err) {
  const od_tracing_config *t = &cfg->tracing;
  od_otlp *o = calloc(1, sizeof *o);
  if (!o || !(o->ring = calloc(OD_OTLP_QUEUE, sizeof *o->ring)) || !(o->endpoint = strdup(t->endpoint)) ||
      !(o->service = strdup(t->service_name ? t->service_name : "odsync"))) {
    if (o) {
      free(o->ring);
      free(o->endpoint);
      free(o);
    }
    return OD_FAIL(err, OD_ENOMEM, "tracing: out of memory");
  }
  o->secret = t->endpoint_secret;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, &o->rng, sizeof o->rng) != (ssize_t)sizeof o->rng) o->rng = (uint64_t)od_now_us();
  if (fd >= 0) close(fd);
  if (!o->rng) o->rng = 0x2545F4914F6CDD1Dull;
  static const od_metric_family_def EXP = {.name = "odsync_trace_batches_exported_total",
                                           .help = "Sampled batches sent to the trace collector",
                                           .type = OD_METRIC_COUNTER};
  static const od_metric_family_def DROP = {.name = "odsync_trace_batches_dropped_total",
                                            .help = "Sampled batches dropped because the export queue was full",
                                            .type = OD_METRIC_COUNTER};
  static const od_metric_family_def FAIL = {.name = "odsync_trace_export_failures_total",
                                            .help = "Trace exports that failed (their batches are dropped)",
                                            .type = OD_METRIC_COUNTER};
  o->exported = od_metrics_series(od_metrics_family(registry, &EXP), NULL);
  o->dropped = od_metrics_series(od_metrics_family(registry, &DROP), NULL);
  o->failed = od_metrics_series(od_metrics_family(registry, &FAIL), NULL);
  pthread_mutex_init(&o->lock, NULL);
  od_cond_init(&o->cond);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (pthread_create(&o->thread, NULL, export_main, o) != 0) {
    od_otlp_stop(o);
    return OD_FAIL(err, OD_ENOMEM, "tracing: cannot start the exporter thread");
  }
  o->started = true;
  od_trace_set_exporter(hook, o, t->sample_ratio);
  od_info("tracing: %.4g of batches to %s (OTLP/HTTP JSON)", t->sample_ratio, o->secret ? "(secret URL)" : o->endpoint);
  *out = o;
  return OD_OK;
}

void od_otlp_stop(od_otlp *o) {
  if (!o) return;
  od_trace_set_exporter(NULL, NULL, 0);
  pthread_mutex_lock(&o->lock);
  o->stop = true;
  pthread_cond_signal(&o->cond);
  pthread_mutex_unlock(&o->lock);
  if (o->started) pthread_join(o->thread, NULL);
  pthread_cond_destroy(&o->cond);
  pthread_mutex_destroy(&o->lock);
  curl_global_cleanup();
  free(o->ring);
  free(o->endpoint);
  free(o->service);
  free(o);
}
