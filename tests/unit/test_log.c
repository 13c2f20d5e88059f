/* test_log.c — the log lines (core/log.c): text and JSON formats, JSON escaping, the pipeline a
 * line names (the thread's, or "pipeline NAME" at the start of the message), level filtering. */
#include <pthread.h>
#include <stdio.h>

#include "core/log.h"
#include "test.h"

static char captured[8192];

static const char *capture(void (*fn)(void)) {
  FILE *f = fmemopen(captured, sizeof captured, "w");
  CHECK(f != NULL);
  od_log_set_output(f);
  fn();
  od_log_set_output(NULL);
  fclose(f);
  return captured;
}

static void json_lines(void) {
  od_log_set_format(OD_LOG_JSON);
  od_log_set_level(OD_LOG_INFO);
  od_info("pipeline shop: streaming from %s", "0/16B3748");
  od_warn("quote \" backslash \\ tab \t newline \n ctl \x01 end");
  od_debug("never shown at info");
}

TEST(json_format_names_the_pipeline_and_escapes) {
  const char *out = capture(json_lines);
  CHECK_CONTAINS(out, "\",\"level\":\"info\",\"pipeline\":\"shop\",\"msg\":\"pipeline shop: streaming from 0/16B3748\"}\n");
  CHECK_CONTAINS(out, "\"level\":\"warn\",\"msg\":\"quote \\\" backslash \\\\ tab \\t newline \\n ctl \\u0001 end\"}\n");
  CHECK(strstr(out, "never shown") == NULL);
  CHECK(strncmp(out, "{\"ts\":\"", 7) == 0);
}

static void *thread_line(void *arg) {
  (void)arg;
  od_log_set_thread_pipeline("billing");
  od_info("snapshot: public.invoices: one chunk");
  return NULL;
}

static void threaded(void) {
  od_log_set_format(OD_LOG_JSON);
  pthread_t t;
  pthread_create(&t, NULL, thread_line, NULL);
  pthread_join(t, NULL);
  od_info("no pipeline here");
}

TEST(json_pipeline_of_the_thread) {
  const char *out = capture(threaded);
  CHECK_CONTAINS(out, "\"pipeline\":\"billing\",\"msg\":\"snapshot: public.invoices: one chunk\"}");
  CHECK_CONTAINS(out, "\"level\":\"info\",\"msg\":\"no pipeline here\"}");
}

static void text_lines(void) {
  od_log_set_format(OD_LOG_TEXT);
  od_error_log("pipeline shop: failed");
}

TEST(text_format_is_unchanged) {
  const char *out = capture(text_lines);
  CHECK_CONTAINS(out, "Z ERROR pipeline shop: failed\n");
  CHECK_INT(od_log_parse_format("json"), OD_LOG_JSON);
  CHECK_INT(od_log_parse_format("text"), OD_LOG_TEXT);
  CHECK_INT(od_log_parse_format("xml"), -1);
}

TEST(byte_counts_for_messages) {
  char b[32];
  CHECK_STR(od_fmt_bytes(-1, b, sizeof b), "unknown");
  CHECK_STR(od_fmt_bytes(0, b, sizeof b), "0 bytes");
  CHECK_STR(od_fmt_bytes(1023, b, sizeof b), "1023 bytes");
  CHECK_STR(od_fmt_bytes(65536, b, sizeof b), "64 kB");
  CHECK_STR(od_fmt_bytes(1536, b, sizeof b), "1.5 kB");
  CHECK_STR(od_fmt_bytes(3LL << 19, b, sizeof b), "1.5 MiB");
  CHECK_STR(od_fmt_bytes(5LL << 30, b, sizeof b), "5.0 GiB");
}
