/* test_otlp.c — traces: the OTLP/HTTP JSON encoding of sampled batches (server/otlp.h) checked
 * for valid JSON, the OTLP field names, ids, parent links and times; the sampling ratio and the
 * hook of core/trace.h. */
#include <ctype.h>

#include "core/trace.h"
#include "server/otlp.h"
#include "test.h"

/* A small JSON syntax checker: returns the end of one value, or NULL. */
static const char *ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  return p;
}
static const char *value(const char *p);
static const char *string(const char *p) {
  if (*p != '"') return NULL;
  for (p++; *p && *p != '"'; p++) {
    if ((unsigned char)*p < 0x20) return NULL;
    if (*p == '\\' && !*++p) return NULL;
  }
  return *p == '"' ? p + 1 : NULL;
}
static const char *value(const char *p) {
  p = ws(p);
  if (*p == '"') return string(p);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        if (!(p = string(ws(p)))) return NULL;
        p = ws(p);
        if (*p++ != ':') return NULL;
      }
      if (!(p = value(p))) return NULL;
      p = ws(p);
      if (*p == close) return p + 1;
      if (*p++ != ',') return NULL;
    }
  }
  if (*p == '-' || isdigit((unsigned char)*p)) {
    while (*p == '-' || *p == '.' || *p == 'e' || *p == '+' || isdigit((unsigned char)*p)) p++;
    return p;
  }
  if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) return p + 4;
  if (!strncmp(p, "false", 5)) return p + 5;
  return NULL;
}
static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
  return n;
}
static uint64_t counter_rand(void *ctx) { return ++*(uint64_t *)ctx * 0x1111111111111111ull; }

TEST(encoding_is_otlp_json) {
  od_trace_batch b[2] = {{.decode_start = 1000, .decode_end = 1500, .queue_end = 1800, .apply_start = 1900,
                          .commit_start = 2500, .commit_end = 3000, .rows = 42, .txns = 3, .xid = 777},
                         {.apply_start = 5000, .commit_start = 5100, .commit_end = 5200, .rows = 1, .txns = 1}};
  snprintf(b[0].pipeline, sizeof b[0].pipeline, "shop");
  snprintf(b[0].sink, sizeof b[0].sink, "default");
  snprintf(b[0].end_pos, sizeof b[0].end_pos, "pg:0/16B3748");
  snprintf(b[1].pipeline, sizeof b[1].pipeline, "sh\"op");
  snprintf(b[1].correlation_first, sizeof b[1].correlation_first, "crm-1");
  snprintf(b[1].correlation_last, sizeof b[1].correlation_last, "crm-\"9");
  uint64_t seed = 0;
  od_sqlbuf o = {0};
  CHECK_INT(od_otlp_encode(b, 2, "odsync-test", 1700000000000000LL, counter_rand, &seed, &o), 0);
  const char *end = value(o.p);
  CHECK(end != NULL && *ws(end) == '\0');
  static const char head[] = "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
                             "{\"stringValue\":\"odsync-test\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"odsync\"";
  CHECK(strncmp(o.p, head, strlen(head)) == 0);
  CHECK_INT(count_of(o.p, "\"spanId\":"), 5 + 3); /* the second batch has no decode stamps */
  CHECK_INT(count_of(o.p, "\"name\":\"odsync.batch\""), 2);
  CHECK_INT(count_of(o.p, "\"name\":\"odsync.queue_wait\""), 1);
  CHECK_INT(count_of(o.p, "\"parentSpanId\":"), 4 + 2);
  /* ids from the counter: trace = r1 r2|1, root = r3|1, children r4.. */
  CHECK_CONTAINS(o.p, "{\"traceId\":\"11111111111111112222222222222223\",\"spanId\":\"3333333333333333\",\"name\":\"odsync.batch\"");
  CHECK_CONTAINS(o.p, "\"spanId\":\"4444444444444445\",\"parentSpanId\":\"3333333333333333\",\"name\":\"odsync.decode\","
                      "\"kind\":1,\"startTimeUnixNano\":\"1700000000001000000\",\"endTimeUnixNano\":\"1700000000001500000\"");
  CHECK_CONTAINS(o.p, "\"name\":\"odsync.sink.commit\",\"kind\":1,\"startTimeUnixNano\":\"1700000000002500000\","
                      "\"endTimeUnixNano\":\"1700000000003000000\"");
  CHECK_CONTAINS(o.p, "{\"key\":\"odsync.source.txn_id\",\"value\":{\"intValue\":\"777\"}}");
  CHECK_CONTAINS(o.p, "{\"key\":\"odsync.position.end\",\"value\":{\"stringValue\":\"pg:0/16B3748\"}}");
  CHECK_CONTAINS(o.p, "{\"stringValue\":\"sh\\\"op\"}");
  /* correlation ids (http ingest) only where the batch had them */
  CHECK_INT(count_of(o.p, "\"odsync.correlation_id.first\""), 1);
  CHECK_CONTAINS(o.p, "{\"key\":\"odsync.correlation_id.first\",\"value\":{\"stringValue\":\"crm-1\"}}");
  CHECK_CONTAINS(o.p, "{\"key\":\"odsync.correlation_id.last\",\"value\":{\"stringValue\":\"crm-\\\"9\"}}");
  od_sqlbuf_free(&o);
}

static int hooked;
static void count_hook(void *ctx, const od_trace_batch *b) {
  (void)ctx;
  hooked += b->rows == 9;
}

TEST(sampling_ratio_and_hook) {
  CHECK(!od_trace_sample()); /* no exporter: never */
  od_trace_set_exporter(count_hook, NULL, 0.25);
  int sampled = 0;
  for (int i = 0; i < 100000; i++) sampled += od_trace_sample();
  CHECK(sampled > 23500 && sampled < 26500);
  od_trace_batch b = {.rows = 9};
  od_trace_submit(&b);
  CHECK_INT(hooked, 1);
  od_trace_set_exporter(count_hook, NULL, 1);
  for (int i = 0; i < 100; i++) CHECK(od_trace_sample());
  od_trace_set_exporter(NULL, NULL, 1);
  CHECK(!od_trace_sample());
  od_trace_submit(&b);
  CHECK_INT(hooked, 1);
}
