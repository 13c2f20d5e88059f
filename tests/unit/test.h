/* test.h — the in-tree unit test runner: TEST(name) functions, CHECK* assertions, and a main
 * that runs every registered test and prints "N passed, N failed". A failing CHECK stops its
 * test and names file:line and the values compared. */
#ifndef ODSYNC_TEST_H
#define ODSYNC_TEST_H

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*od_test_fn)(void);
struct od_test_entry { const char *name; od_test_fn fn; };

static struct od_test_entry od_tests[256];
static int od_ntests;
static jmp_buf od_test_jmp;
static int od_test_checks;

#define TEST(tname)                                                           \
  static void test_##tname(void);                                             \
  __attribute__((constructor)) static void register_##tname(void) {           \
    od_tests[od_ntests].name = #tname;                                        \
    od_tests[od_ntests++].fn = test_##tname;                                  \
  }                                                                           \
  static void test_##tname(void)

#define OD_TEST_FAIL(...)                                                     \
  do {                                                                        \
    fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                         \
    fprintf(stderr, __VA_ARGS__);                                             \
    fputc('\n', stderr);                                                      \
    longjmp(od_test_jmp, 1);                                                  \
  } while (0)

#define CHECK(cond)                                                           \
  do {                                                                        \
    od_test_checks++;                                                         \
    if (!(cond)) OD_TEST_FAIL("CHECK(%s) failed", #cond);                     \
  } while (0)

#define CHECK_INT(a, b)                                                       \
  do {                                                                        \
    long long va_ = (long long)(a), vb_ = (long long)(b);                     \
    od_test_checks++;                                                         \
    if (va_ != vb_) OD_TEST_FAIL("%s == %s: %lld != %lld", #a, #b, va_, vb_); \
  } while (0)

#define CHECK_STR(a, b)                                                       \
  do {                                                                        \
    const char *sa_ = (a), *sb_ = (b);                                        \
    od_test_checks++;                                                         \
    if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0)                                \
      OD_TEST_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, sa_ ? sa_ : "(null)", \
                   sb_ ? sb_ : "(null)");                                     \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                           \
  do {                                                                        \
    const char *h_ = (hay), *n_ = (needle);                                   \
    od_test_checks++;                                                         \
    if (!h_ || !strstr(h_, n_))                                               \
      OD_TEST_FAIL("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); \
  } while (0)

/* Runs one test; 1 when it passed. Kept apart from main so no loop variable lives across setjmp. */
static int od_run_one(int i) {
  int before = od_test_checks;
  if (setjmp(od_test_jmp) != 0) {
    fprintf(stderr, "FAIL %s\n", od_tests[i].name);
    return 0;
  }
  od_tests[i].fn();
  if (od_test_checks == before) {
    fprintf(stderr, "FAIL %s: asserted nothing\n", od_tests[i].name);
    return 0;
  }
  printf("ok   %s\n", od_tests[i].name);
  return 1;
}

int main(int argc, char **argv) {
  int passed = 0, failed = 0;
  for (int i = 0; i < od_ntests; i++) {
    if (argc > 1 && !strstr(od_tests[i].name, argv[1])) continue;
    if (od_run_one(i)) passed++; else failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : (passed ? 0 : 1);
}

#endif
