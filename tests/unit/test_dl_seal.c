/* Unit tests for sealed dead letters (src/core/dl_seal.c): the row and error of a dead letter
 * round-trip sealed, hold no plaintext, and are refused when tampered, moved to another dead
 * letter or field, opened without keys or with a wrong key, or stored clear while keys are
 * configured; rotation keeps old ones readable. In the valgrind list of scripts/test.sh. */
#include <stdlib.h>
#include <string.h>

#include "common/seal.h"
#include "core/dl_seal.h"
#include "test.h"

#define K1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define ROW "{\"table\":\"public.t\",\"op\":\"insert\",\"new\":[\"5\",\"marker-4711\"]}"

static od_keyring *ring(const char *id1, const char *k1, const char *id2, const char *k2) {
  od_keyring *kr = NULL;
  od_error err;
  if (od_keyring_new(&kr, &err)) OD_TEST_FAIL("keyring: %s", err.msg);
  if (id1 && od_keyring_add(kr, id1, k1, true, "test", &err)) OD_TEST_FAIL("add: %s", err.msg);
  if (id2 && od_keyring_add(kr, id2, k2, false, "test", &err)) OD_TEST_FAIL("add: %s", err.msg);
  return kr;
}

TEST(round_trip_without_and_with_keys) {
  od_error err;
  char *st = NULL, *pt = NULL;
  CHECK_INT(od_dl_seal(NULL, "p.s", "0/10#1", "change", ROW, &st, &err), OD_OK);
  CHECK_STR(st, ROW);
  CHECK_INT(od_dl_open(NULL, "p.s", "0/10#1", "change", st, &pt, &err), OD_OK);
  CHECK_STR(pt, ROW);
  free(st);
  free(pt);
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  CHECK_INT(od_dl_seal(kr, "p.s", "0/10#1", "change", ROW, &st, &err), OD_OK);
  CHECK(strncmp(st, "\"sealed:", 8) == 0); /* a JSON string (jsonb columns) */
  CHECK(st[strlen(st) - 1] == '"');
  CHECK(od_dl_is_sealed(st));
  CHECK(!od_dl_is_sealed(ROW));
  CHECK(strstr(st, "marker-4711") == NULL);
  CHECK(strchr(st, '\n') == NULL);
  CHECK_INT(od_dl_open(kr, "p.s", "0/10#1", "change", st, &pt, &err), OD_OK);
  CHECK_STR(pt, ROW);
  free(pt);
  free(st);
  od_keyring_free(kr);
}

TEST(tampered_moved_and_wrong_key_are_refused) {
  od_error err;
  char *st = NULL, *pt = NULL;
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  CHECK_INT(od_dl_seal(kr, "p.s", "0/10#1", "change", ROW, &st, &err), OD_OK);
  /* Another position, another field, another sink: does not authenticate. */
  CHECK_INT(od_dl_open(kr, "p.s", "0/10#2", "change", st, &pt, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "does not authenticate");
  CHECK_CONTAINS(err.msg, "0/10#2");
  CHECK_INT(od_dl_open(kr, "p.s", "0/10#1", "error", st, &pt, &err), OD_EIO);
  CHECK_INT(od_dl_open(kr, "p.t", "0/10#1", "change", st, &pt, &err), OD_EIO);
  /* One base64 character changed. */
  char *t = strdup(st);
  size_t mid = strlen(t) / 2;
  t[mid] = t[mid] == 'A' ? 'B' : 'A';
  CHECK_INT(od_dl_open(kr, "p.s", "0/10#1", "change", t, &pt, &err), OD_EIO);
  CHECK(pt == NULL);
  free(t);
  /* Same id, other key; the key under another id; no keys at all. */
  od_keyring *wrong = ring("k1", K2, NULL, NULL), *other = ring("k9", K1, NULL, NULL);
  CHECK_INT(od_dl_open(wrong, "p.s", "0/10#1", "change", st, &pt, &err), OD_EIO);
  CHECK_INT(od_dl_open(other, "p.s", "0/10#1", "change", st, &pt, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "key id 'k1'");
  CHECK_INT(od_dl_open(NULL, "p.s", "0/10#1", "change", st, &pt, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "no `encryption:` keys");
  /* A clear value while keys are configured. */
  CHECK_INT(od_dl_open(kr, "p.s", "0/10#1", "change", ROW, &pt, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "unencrypted");
  free(st);
  od_keyring_free(kr);
  od_keyring_free(wrong);
  od_keyring_free(other);
}

TEST(rotation_keeps_old_dead_letters_readable) {
  od_error err;
  char *old = NULL, *neu = NULL, *pt = NULL;
  od_keyring *k1 = ring("k1", K1, NULL, NULL), *rot = ring("k2", K2, "k1", K1);
  CHECK_INT(od_dl_seal(k1, "p", "0/1#0", "error", "duplicate key (id)=(5)", &old, &err), OD_OK);
  CHECK_INT(od_dl_seal(rot, "p", "0/2#0", "error", "value too long", &neu, &err), OD_OK);
  CHECK_INT(od_dl_open(rot, "p", "0/1#0", "error", old, &pt, &err), OD_OK);
  CHECK_STR(pt, "duplicate key (id)=(5)");
  free(pt);
  CHECK_INT(od_dl_open(rot, "p", "0/2#0", "error", neu, &pt, &err), OD_OK);
  CHECK_STR(pt, "value too long");
  free(pt);
  CHECK_INT(od_dl_open(k1, "p", "0/2#0", "error", neu, &pt, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "key id 'k2'");
  free(old);
  free(neu);
  od_keyring_free(k1);
  od_keyring_free(rot);
}
