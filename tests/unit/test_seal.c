/* Unit tests for encryption at rest (src/common/seal.c): round trips, key rotation, and that every
 * kind of tampering (a flipped byte, a swapped or moved record, a wrong key, a truncation, a file
 * edited on disk) is refused with an error naming the file and record. Also the `encryption:`
 * config section (keys only by reference, bad keys with their position). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/seal.h"
#include "odsync/config.h"
#include "test.h"

#define K1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K2 "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff"
#define K2_B64 "8PHy8/T19vf4+fr7/P3+/wARIjNEVWZ3iJmqu8zd7v8="

static od_keyring *ring(const char *first_id, const char *first, const char *second_id, const char *second) {
  od_keyring *kr = NULL;
  od_error e = {0};
  CHECK_INT(od_keyring_new(&kr, &e), OD_OK);
  if (first) CHECK_INT(od_keyring_add(kr, first_id, first, true, "k", &e), OD_OK);
  if (second) CHECK_INT(od_keyring_add(kr, second_id, second, false, "k", &e), OD_OK);
  return kr;
}

TEST(seal_round_trip_and_binding) {
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_error e = {0};
  const char msg[] = "{\"id\":1,\"email\":\"ann@example.com\"}";
  unsigned char *blob = NULL, *pt = NULL;
  size_t blen = 0, plen = 0;
  CHECK_INT(od_seal(kr, "seg-1.spool", 7, msg, sizeof msg - 1, &blob, &blen, &e), OD_OK);
  CHECK_INT(blen, sizeof msg - 1 + od_seal_overhead(kr));
  CHECK(memmem(blob, blen, "ann@example.com", 15) == NULL); /* not in clear */
  CHECK_INT(od_open(kr, "seg-1.spool", 7, blob, blen, &pt, &plen, &e), OD_OK);
  CHECK_INT(plen, sizeof msg - 1);
  CHECK_STR((char *)pt, msg);
  free(pt);
  /* Another index (swapped/reordered record) or another file name (moved record): refused. */
  CHECK_INT(od_open(kr, "seg-1.spool", 8, blob, blen, &pt, &plen, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "seg-1.spool: record 8 does not authenticate");
  CHECK(pt == NULL);
  CHECK_INT(od_open(kr, "seg-2.spool", 7, blob, blen, &pt, &plen, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "seg-2.spool: record 7 does not authenticate");
  /* Every single flipped byte is detected (header, nonce, ciphertext, tag). */
  for (size_t i = 0; i < blen; i++) {
    blob[i] ^= 0x01;
    CHECK(od_open(kr, "seg-1.spool", 7, blob, blen, &pt, &plen, &e) != OD_OK);
    CHECK(pt == NULL);
    blob[i] ^= 0x01;
  }
  /* Truncated. */
  CHECK_INT(od_open(kr, "seg-1.spool", 7, blob, blen - 1, &pt, &plen, &e), OD_EIO);
  CHECK_INT(od_open(kr, "seg-1.spool", 7, blob, 10, &pt, &plen, &e), OD_EIO);
  /* Two seals of the same text differ (random nonces). */
  unsigned char *blob2 = NULL;
  size_t blen2 = 0;
  CHECK_INT(od_seal(kr, "seg-1.spool", 7, msg, sizeof msg - 1, &blob2, &blen2, &e), OD_OK);
  CHECK(blen2 == blen && memcmp(blob, blob2, blen) != 0);
  free(blob2);
  free(blob);
  /* Empty records are fine too. */
  CHECK_INT(od_seal(kr, "x", 0, "", 0, &blob, &blen, &e), OD_OK);
  CHECK_INT(od_open(kr, "x", 0, blob, blen, &pt, &plen, &e), OD_OK);
  CHECK_INT(plen, 0);
  free(pt);
  free(blob);
  od_keyring_free(kr);
}

TEST(seal_key_rotation) {
  od_error e = {0};
  od_keyring *old = ring("2026-06", K1, NULL, NULL);
  unsigned char *blob = NULL, *pt = NULL;
  size_t blen = 0, plen = 0;
  CHECK_INT(od_seal(old, "f", 0, "old row", 7, &blob, &blen, &e), OD_OK);
  od_keyring_free(old);
  /* New current key (base64 form), old key kept: old records open, new ones use the new id. */
  od_keyring *kr = ring("2026-12", K2_B64, "2026-06", K1);
  CHECK_STR(od_keyring_current(kr), "2026-12");
  CHECK_INT(od_open(kr, "f", 0, blob, blen, &pt, &plen, &e), OD_OK);
  CHECK_STR((char *)pt, "old row");
  free(pt);
  unsigned char *nb = NULL;
  size_t nlen = 0;
  CHECK_INT(od_seal(kr, "f", 1, "new row", 7, &nb, &nlen, &e), OD_OK);
  CHECK(memmem(nb, nlen, "2026-12", 7) != NULL);
  od_keyring_free(kr);
  /* Without the old key, its records cannot be read: the message names the key id. */
  kr = ring("2026-12", K2, NULL, NULL);
  CHECK_INT(od_open(kr, "f", 0, blob, blen, &pt, &plen, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "f: record 0 was sealed with key id '2026-06', which is not in encryption.keys");
  CHECK_INT(od_open(kr, "f", 1, nb, nlen, &pt, &plen, &e), OD_OK); /* hex and base64 are the same key */
  free(pt);
  od_keyring_free(kr);
  /* The same id with another key: does not authenticate. */
  kr = ring("2026-06", K2, NULL, NULL);
  CHECK_INT(od_open(kr, "f", 0, blob, blen, &pt, &plen, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "does not authenticate");
  od_keyring_free(kr);
  free(blob);
  free(nb);
}

TEST(seal_bad_keys) {
  od_keyring *kr = ring(NULL, NULL, NULL, NULL);
  od_error e = {0};
  CHECK_INT(od_keyring_add(kr, "a", "abc", true, "encryption.keys[0]", &e), OD_ECONFIG);
  CHECK_STR(e.msg, "encryption.keys[0] (id a): the key is not 32 bytes as 64 hex digits or base64 (make one with: "
                   "openssl rand -hex 32)");
  CHECK_INT(od_keyring_add(kr, "b", K1 "00", true, "w", &e), OD_ECONFIG);
  CHECK(strstr(e.msg, K1) == NULL);
  CHECK_INT(od_keyring_add(kr, "has space", K1, true, "w", &e), OD_ECONFIG);
  CHECK_INT(od_keyring_add(kr, "a", K1, true, "w", &e), OD_OK);
  CHECK_INT(od_keyring_add(kr, "a", K2, false, "w", &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "key id a is used twice");
  unsigned char *blob = NULL;
  size_t blen = 0;
  od_keyring_free(kr);
  kr = ring(NULL, NULL, NULL, NULL);
  CHECK_INT(od_seal(kr, "f", 0, "x", 1, &blob, &blen, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "no current encryption key");
  od_keyring_free(kr);
}

static char *tmp_dir(void) {
  static char dir[64];
  snprintf(dir, sizeof dir, "/tmp/odsync-seal-XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  return dir;
}

static void file_bytes(const char *path, unsigned char **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  *buf = malloc(*len + 1);
  CHECK(fread(*buf, 1, *len, f) == *len);
  fclose(f);
}

static void put_bytes(const char *path, const unsigned char *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  CHECK(fwrite(buf, 1, len, f) == len);
  fclose(f);
}

TEST(seal_file_tampered_on_disk) {
  char *dir = tmp_dir();
  char path[128], other[128];
  snprintf(path, sizeof path, "%s/dead-letters.bin", dir);
  snprintf(other, sizeof other, "%s/other.bin", dir);
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_error e = {0};
  const char data[] = "row 1: card 4111111111111111\nrow 2: card 5500000000000004\n";
  CHECK_INT(od_seal_file_write(kr, path, data, sizeof data - 1, &e), OD_OK);
  struct stat st;
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_mode & 0777, 0600);
  unsigned char *raw = NULL, *pt = NULL;
  size_t rlen = 0, plen = 0;
  file_bytes(path, &raw, &rlen);
  CHECK(memmem(raw, rlen, "4111111111111111", 16) == NULL);
  CHECK_INT(od_seal_file_read(kr, path, &pt, &plen, &e), OD_OK);
  CHECK_STR((char *)pt, data);
  free(pt);
  /* One byte of the ciphertext changed on disk. */
  raw[rlen / 2] ^= 0x20;
  put_bytes(path, raw, rlen);
  CHECK_INT(od_seal_file_read(kr, path, &pt, &plen, &e), OD_EIO);
  CHECK(pt == NULL);
  char want[300];
  snprintf(want, sizeof want, "encrypted file %s: dead-letters.bin: record 0 does not authenticate", path);
  CHECK_CONTAINS(e.msg, want);
  raw[rlen / 2] ^= 0x20;
  /* The intact file copied under another name: refused (bound to its name). */
  put_bytes(other, raw, rlen);
  CHECK_INT(od_seal_file_read(kr, other, &pt, &plen, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "other.bin: record 0 does not authenticate");
  /* Cut short on disk. */
  put_bytes(path, raw, rlen - 5);
  CHECK_INT(od_seal_file_read(kr, path, &pt, &plen, &e), OD_EIO);
  /* A plaintext file where a sealed one is expected. */
  put_bytes(path, (const unsigned char *)data, sizeof data - 1);
  CHECK_INT(od_seal_file_read(kr, path, &pt, &plen, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "is not an odsync sealed record");
  free(raw);
  unlink(path);
  unlink(other);
  rmdir(dir);
  od_keyring_free(kr);
}

TEST(seal_record_file_reorder_and_torn_tail) {
  char *dir = tmp_dir();
  char path[128];
  snprintf(path, sizeof path, "%s/seg.log", dir);
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_error e = {0};
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
  CHECK(fd >= 0);
  const char *recs[] = {"alpha-record", "beta-record!", "gamma-record"}; /* same length: swappable */
  for (int i = 0; i < 3; i++) CHECK_INT(od_seal_append(fd, kr, "seg.log", (uint64_t)i, recs[i], 12, &e), OD_OK);
  close(fd);
  unsigned char *raw = NULL, *pt = NULL;
  size_t rlen = 0, plen = 0, pos = 0;
  file_bytes(path, &raw, &rlen);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(od_seal_next(raw, rlen, &pos, kr, "seg.log", (uint64_t)i, &pt, &plen, &e), OD_OK);
    CHECK_STR((char *)pt, recs[i]);
    free(pt);
  }
  CHECK_INT(od_seal_next(raw, rlen, &pos, kr, "seg.log", 3, &pt, &plen, &e), OD_EOF);
  /* Swap records 0 and 1 (frames of equal size) on disk: the first read fails. */
  size_t frame = rlen / 3;
  unsigned char *sw = malloc(rlen);
  memcpy(sw, raw + frame, frame);
  memcpy(sw + frame, raw, frame);
  memcpy(sw + 2 * frame, raw + 2 * frame, frame);
  pos = 0;
  CHECK_INT(od_seal_next(sw, rlen, &pos, kr, "seg.log", 0, &pt, &plen, &e), OD_EIO);
  CHECK_CONTAINS(e.msg, "seg.log: record 0 does not authenticate");
  /* Delete record 1 from the middle: record 2 read as index 1 fails. */
  memcpy(sw, raw, frame);
  memcpy(sw + frame, raw + 2 * frame, frame);
  pos = 0;
  CHECK_INT(od_seal_next(sw, 2 * frame, &pos, kr, "seg.log", 0, &pt, &plen, &e), OD_OK);
  free(pt);
  CHECK_INT(od_seal_next(sw, 2 * frame, &pos, kr, "seg.log", 1, &pt, &plen, &e), OD_EIO);
  /* A torn last frame is the end, and pos stays at its start (the caller may cut there). */
  pos = 0;
  size_t torn = 2 * frame + 7;
  for (int i = 0; i < 2; i++) {
    CHECK_INT(od_seal_next(raw, torn, &pos, kr, "seg.log", (uint64_t)i, &pt, &plen, &e), OD_OK);
    free(pt);
  }
  CHECK_INT(od_seal_next(raw, torn, &pos, kr, "seg.log", 2, &pt, &plen, &e), OD_EOF);
  CHECK_INT(pos, 2 * frame);
  free(sw);
  free(raw);
  unlink(path);
  rmdir(dir);
  od_keyring_free(kr);
}

#define PIPE "pipelines:\n  - name: shop\n    source: { type: postgres }\n    sink: { type: sqlite }\n"

TEST(encryption_config) {
  od_config *c = NULL;
  od_error e = {0};
  setenv("ODSYNC_TEST_KEY_NEW", K2, 1);
  setenv("ODSYNC_TEST_KEY_OLD", K1, 1);
  setenv("ODSYNC_TEST_KEY_BAD", "0123", 1);
  const char *ok = "encryption:\n  keys:\n    - { id: new, key: \"${env:ODSYNC_TEST_KEY_NEW}\" }\n"
                   "    - { id: old, key: \"${env:ODSYNC_TEST_KEY_OLD}\" }\n" PIPE;
  CHECK_INT(od_config_parse(ok, strlen(ok), "cfg.yaml", &c, &e), OD_OK);
  CHECK_INT(c->encryption.nkeys, 2);
  od_keyring *kr = NULL;
  CHECK_INT(od_keyring_from_config(c, &kr, &e), OD_OK);
  CHECK_STR(od_keyring_current(kr), "new");
  od_keyring_free(kr);
  od_config_free(c);
  const char *literal = "encryption:\n  keys:\n    - { id: a, key: \"" K1 "\" }\n" PIPE;
  CHECK_INT(od_config_parse(literal, strlen(literal), "cfg.yaml", &c, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:3:21: encryption.keys[0].key: write the key as a reference");
  CHECK(strstr(e.msg, K1) == NULL);
  const char *bad = "encryption:\n  keys:\n    - { id: a, key: \"${env:ODSYNC_TEST_KEY_BAD}\" }\n" PIPE;
  CHECK_INT(od_config_parse(bad, strlen(bad), "cfg.yaml", &c, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:3:21: encryption.keys[0] (id a): the key is not 32 bytes");
  CHECK(strstr(e.msg, "0123") == NULL);
  c = NULL;
  CHECK_INT(od_keyring_from_config(&(od_config){0}, &kr, &e), OD_OK);
  CHECK(kr == NULL);
}
