/* Unit tests for core/keytuple.c: the byte encoding of key tuples, the set of changed key tuples
 * of an incremental snapshot's window, and the progress mark text (format, parse, refusal of
 * malformed marks). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/keytuple.h"
#include "test.h"

#define TV(s) ((od_value){.data = (s), .len = (uint32_t)strlen(s), .kind = OD_VALUE_TEXT})
#define NV ((od_value){.data = NULL, .len = 0, .kind = OD_VALUE_NULL})
#define UV ((od_value){.data = NULL, .len = 0, .kind = OD_VALUE_UNCHANGED})

/* Encode (values, key columns) into a freshly allocated copy; *len its length. NULL when no key. */
static char *enc(od_value *vals, uint16_t nvals, const uint16_t *cols, int n, size_t *len) {
  od_keybuf b = {0};
  od_tuple t = {.ncolumns = nvals, .values = vals};
  int rc = od_key_encode(&b, &t, cols, n);
  CHECK(rc >= 0);
  char *copy = NULL;
  *len = 0;
  if (rc == 1) {
    copy = malloc(b.len ? b.len : 1);
    CHECK(copy != NULL);
    memcpy(copy, b.p, b.len);
    *len = b.len;
  }
  od_keybuf_free(&b);
  return copy;
}

TEST(encoding_is_unambiguous_and_follows_the_key_order) {
  const uint16_t k01[] = {0, 1}, k10[] = {1, 0};
  od_value a[] = {TV("ab"), TV("c"), TV("other")};
  od_value b[] = {TV("a"), TV("bc"), TV("other")};
  size_t la, lb;
  char *ea = enc(a, 3, k01, 2, &la), *eb = enc(b, 3, k01, 2, &lb);
  CHECK(ea && eb);
  /* "ab"+"c" and "a"+"bc" concatenate alike; their encodings differ */
  CHECK(!(la == lb && !memcmp(ea, eb, la)));
  CHECK_INT(la, 4 + 2 + 4 + 1);
  free(eb);
  /* column order matters: (c, ab) is another tuple than (ab, c) */
  eb = enc(a, 3, k10, 2, &lb);
  CHECK(!(la == lb && !memcmp(ea, eb, la)));
  free(eb);
  /* non-key columns do not take part */
  od_value c[] = {TV("ab"), TV("c"), TV("changed")};
  eb = enc(c, 3, k01, 2, &lb);
  CHECK(la == lb && !memcmp(ea, eb, la));
  free(eb);
  /* the empty string is a value, not an absence */
  od_value d[] = {TV(""), TV("c")};
  eb = enc(d, 2, k01, 2, &lb);
  CHECK(eb != NULL);
  CHECK_INT(lb, 4 + 0 + 4 + 1);
  free(eb);
  free(ea);
}

TEST(tuples_without_a_whole_key_have_no_encoding) {
  const uint16_t k01[] = {0, 1}, k2[] = {2};
  size_t l;
  od_value n1[] = {TV("1"), NV};
  CHECK(enc(n1, 2, k01, 2, &l) == NULL); /* NULL */
  od_value u1[] = {UV, TV("x")};
  CHECK(enc(u1, 2, k01, 2, &l) == NULL); /* unchanged TOASTed value */
  od_value bin[] = {{.data = "\x01", .len = 1, .kind = OD_VALUE_BINARY}, TV("x")};
  CHECK(enc(bin, 2, k01, 2, &l) == NULL); /* binary value */
  od_value short1[] = {TV("1"), TV("2")};
  CHECK(enc(short1, 2, k2, 1, &l) == NULL); /* tuple shorter than the key's column index */
  od_keybuf b = {0};
  od_tuple none = {0};
  CHECK_INT(od_key_encode(&b, &none, k01, 2), 0); /* no tuple at all (a delete's new tuple) */
  od_keybuf_free(&b);
}

TEST(set_add_has_clear_and_growth) {
  od_keyset s;
  od_keyset_init(&s);
  CHECK(!od_keyset_has(&s, "x", 1));
  CHECK_INT(od_keyset_add(&s, "x", 1), OD_OK);
  CHECK_INT(od_keyset_add(&s, "x", 1), OD_OK); /* twice: one member */
  CHECK_INT(od_keyset_count(&s), 1);
  CHECK(od_keyset_has(&s, "x", 1));
  CHECK(!od_keyset_has(&s, "x\0", 2)); /* lengths count, bytes after NUL too */
  CHECK_INT(od_keyset_add(&s, "", 0), OD_OK);
  CHECK(od_keyset_has(&s, "", 0));
  /* 20,000 encoded composite keys (int, text): every one found, none of another range */
  const uint16_t k01[] = {0, 1};
  od_keybuf b = {0};
  char n[32], t[32];
  for (int i = 0; i < 20000; i++) {
    snprintf(n, sizeof n, "%d", i);
    snprintf(t, sizeof t, "name %d", i % 7);
    od_value v[] = {TV(n), TV(t)};
    od_tuple tup = {.ncolumns = 2, .values = v};
    CHECK_INT(od_key_encode(&b, &tup, k01, 2), 1);
    CHECK_INT(od_keyset_add(&s, b.p, b.len), OD_OK);
  }
  CHECK_INT(od_keyset_count(&s), 20002);
  int found = 0, wrong = 0;
  for (int i = 0; i < 20000; i++) {
    snprintf(n, sizeof n, "%d", i);
    snprintf(t, sizeof t, "name %d", i % 7);
    od_value v[] = {TV(n), TV(t)};
    od_tuple tup = {.ncolumns = 2, .values = v};
    od_key_encode(&b, &tup, k01, 2);
    found += od_keyset_has(&s, b.p, b.len);
    snprintf(t, sizeof t, "name %d", i % 7 + 1); /* same number, other name: another key */
    od_key_encode(&b, &tup, k01, 2);
    wrong += od_keyset_has(&s, b.p, b.len);
  }
  CHECK_INT(found, 20000);
  CHECK_INT(wrong, 0);
  /* cleared for the next window, and usable again */
  od_keyset_clear(&s);
  CHECK_INT(od_keyset_count(&s), 0);
  CHECK(!od_keyset_has(&s, "x", 1));
  CHECK_INT(od_keyset_add(&s, "y", 1), OD_OK);
  CHECK(od_keyset_has(&s, "y", 1) && !od_keyset_has(&s, "x", 1));
  od_keybuf_free(&b);
  od_keyset_free(&s);
}

TEST(mark_round_trip_with_awkward_values) {
  const char *names[] = {"id", "na me", "k:3"};
  const char *types[] = {"integer", "character varying(20)", "timestamp with time zone"};
  const char *values[] = {"-42", " 12:x 3:y \\x00 ", ""};
  char *text = NULL;
  CHECK_INT(od_keymark_format("DateStyle=ISO, MDY;IntervalStyle=postgres;TimeZone=UTC", 3, names, types, values,
                              &text),
            OD_OK);
  CHECK(text != NULL);
  CHECK(!strncmp(text, "K1 ", 3));
  od_keymark m;
  CHECK_INT(od_keymark_parse(text, &m), OD_OK);
  CHECK_STR(m.form, "DateStyle=ISO, MDY;IntervalStyle=postgres;TimeZone=UTC");
  CHECK_INT(m.n, 3);
  for (int i = 0; i < 3; i++) {
    CHECK_STR(m.names[i], names[i]);
    CHECK_STR(m.types[i], types[i]);
    CHECK_STR(m.values[i], values[i]);
  }
  char desc[256];
  od_keymark_describe(&m, desc, sizeof desc);
  CHECK_STR(desc, "(id, na me, k:3) > (-42,  12:x 3:y \\x00 , )");
  od_keymark_free(&m);
  free(text);
  /* one column; UTF-8 value; empty form; lengths are bytes */
  const char *n1[] = {"u"}, *t1[] = {"text"}, *v1[] = {"\xc3\xa9t\xc3\xa9"};
  CHECK_INT(od_keymark_format("", 1, n1, t1, v1, &text), OD_OK);
  CHECK_STR(text, "K1 0: 1:1 1:u 4:text 5:\xc3\xa9t\xc3\xa9");
  CHECK_INT(od_keymark_parse(text, &m), OD_OK);
  CHECK_STR(m.values[0], "\xc3\xa9t\xc3\xa9");
  od_keymark_describe(&m, desc, sizeof desc);
  CHECK_STR(desc, "u > \xc3\xa9t\xc3\xa9");
  od_keymark_free(&m);
  free(text);
}

TEST(malformed_marks_are_refused) {
  static const char *bad[] = {
      "",                                          /* empty */
      "12345",                                     /* an integer mark's text */
      "K2 0: 1:1 1:u 4:text 1:x",                  /* another version */
      "K1 0: 1:1 1:u 4:text",                      /* a value missing */
      "K1 0: 1:1 1:u 4:text 9:x",                  /* a length past the end */
      "K1 0: 1:1 1:u 4:text 1:x 1:y",              /* trailing field */
      "K1 0: 1:1 1:u 4:text 1:xy",                 /* trailing bytes */
      "K1 0: 1:0",                                 /* no key column */
      "K1 0: 2:33 1:u 4:text 1:x",                 /* more columns than the limit */
      "K1 0: 1:x 1:u 4:text 1:x",                  /* count not a number */
      "K1 0:1:1 1:u 4:text 1:x",                   /* separator missing */
      "K1 0: -1:1 1:u 4:text 1:x",                 /* negative length */
      "K1 0: 1:1 1:u 4:text 18446744073709551615:x", /* absurd length */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    od_keymark m;
    int rc = od_keymark_parse(bad[i], &m);
    if (rc != OD_EINVAL) OD_TEST_FAIL("mark '%s' parsed with %d", bad[i], rc);
    od_keymark_free(&m);
  }
  char *text = (char *)"x";
  const char *n1[] = {"u"};
  CHECK_INT(od_keymark_format("", 0, n1, n1, n1, &text), OD_EINVAL);
  CHECK(text == NULL);
  od_keymark m;
  CHECK_INT(od_keymark_parse(NULL, &m), OD_EINVAL);
}
