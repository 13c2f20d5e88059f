/* Unit tests for the segment-file module (src/common/segfile.c): framing, scan, torn tails, and
 * sealing (encryption at rest): no plaintext on disk, a tampered byte, two swapped records, a
 * record copied to another file, truncation, a wrong key, a missing key, key rotation, plain and
 * sealed frames mixed, format-1 files. Real files in a mkdtemp dir. In the valgrind list of
 * scripts/test.sh. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/seal.h"
#include "common/segfile.h"
#include "test.h"

#define K1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define MARKER "secret-marker-7731"

static char dir[64];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/od_segf_XXXXXX");
  if (!mkdtemp(dir)) OD_TEST_FAIL("mkdtemp failed");
}

static void rm_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) OD_TEST_FAIL("rm failed");
}

static od_keyring *ring(const char *id1, const char *k1, const char *id2, const char *k2) {
  od_keyring *kr = NULL;
  od_error err;
  if (od_keyring_new(&kr, &err)) OD_TEST_FAIL("keyring: %s", err.msg);
  if (id1 && od_keyring_add(kr, id1, k1, true, "test", &err)) OD_TEST_FAIL("add: %s", err.msg);
  if (id2 && od_keyring_add(kr, id2, k2, false, "test", &err)) OD_TEST_FAIL("add: %s", err.msg);
  return kr;
}

static od_segfile *open_sf(const od_keyring *kr) {
  char d[128];
  snprintf(d, sizeof d, "%s/j", dir);
  od_segfile_opts o = {.dir = d, .suffix = ".seg", .what = "test journal", .kr = kr};
  od_segfile *sf = NULL;
  od_error err;
  if (od_segfile_open(&o, &sf, &err)) OD_TEST_FAIL("open: %s", err.msg);
  return sf;
}

/* Records "<MARKER> record <i>" padded to 100 bytes (equal sizes: swappable). */
static void payload(int i, char *buf) {
  memset(buf, 'x', 100);
  int n = snprintf(buf, 100, "%s record %03d", MARKER, i);
  buf[n] = ' ';
}

/* Write n records into segment `id` (new), flushed and synced; offsets into offs. */
static void write_seg(od_segfile *sf, uint64_t id, int first, int n, uint64_t *offs) {
  od_error err;
  if (od_segfile_roll(sf, id, &err)) OD_TEST_FAIL("roll: %s", err.msg);
  for (int i = 0; i < n; i++) {
    char p[100];
    payload(first + i, p);
    uint64_t off;
    uint32_t fs;
    CHECK_INT(od_segfile_append(sf, p, sizeof p, &off, &fs, &err), OD_OK);
    CHECK_INT(fs, od_segfile_frame_size(sf, sizeof p));
    if (offs) offs[i] = off;
  }
  CHECK_INT(od_segfile_flush(sf, true, &err), OD_OK);
}

typedef struct seen {
  int n;
  int ids[64];
  uint64_t offs[64];
} seen;

static int visit(void *ctx, uint64_t id, uint64_t off, uint32_t fs, const uint8_t *p, size_t len, od_error *err) {
  (void)id, (void)fs, (void)err;
  seen *s = ctx;
  if (len != 100 || memcmp(p, MARKER, strlen(MARKER))) return OD_EIO;
  s->ids[s->n] = atoi((const char *)p + strlen(MARKER) + 8);
  s->offs[s->n++] = off;
  return OD_OK;
}

static int scan(const od_keyring *kr, uint64_t id, bool last, seen *s, uint64_t *size, od_error *err) {
  od_segfile *sf = open_sf(kr);
  memset(s, 0, sizeof *s);
  int rc = od_segfile_scan(sf, id, last, visit, s, size, err);
  od_segfile_close(sf);
  return rc;
}

static void seg_path(uint64_t id, char *buf, size_t size) {
  snprintf(buf, size, "%s/j/%020llu.seg", dir, (unsigned long long)id);
}

static bool file_has(const char *path, const char *needle) {
  FILE *f = fopen(path, "rb");
  if (!f) OD_TEST_FAIL("cannot open %s", path);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return memmem(buf, n, needle, strlen(needle)) != NULL;
}

/* Recompute the CRC of the frame at off (after editing its bytes, as a careful attacker would). */
static void fix_crc(const char *path, uint64_t off) {
  int fd = open(path, O_RDWR);
  uint8_t h[16];
  CHECK(pread(fd, h, 16, (off_t)off) == 16);
  uint32_t len = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 | (uint32_t)h[11] << 24;
  uint8_t *b = malloc(len);
  CHECK(pread(fd, b, len, (off_t)(off + 16)) == (ssize_t)len);
  uLong c = crc32(crc32(0L, Z_NULL, 0), h, 12);
  c = crc32(c, b, len);
  for (int i = 0; i < 4; i++) h[12 + i] = (uint8_t)(c >> (8 * i));
  CHECK(pwrite(fd, h + 12, 4, (off_t)(off + 12)) == 4);
  free(b);
  close(fd);
}

static void flip(const char *path, off_t at) {
  int fd = open(path, O_RDWR);
  uint8_t b;
  CHECK(pread(fd, &b, 1, at) == 1);
  b ^= 0x01;
  CHECK(pwrite(fd, &b, 1, at) == 1);
  close(fd);
}

TEST(plain_round_trip_scan_and_read) {
  fresh_dir();
  od_segfile *sf = open_sf(NULL);
  uint64_t offs[5];
  write_seg(sf, 7, 0, 5, offs);
  od_error err;
  uint64_t *ids;
  size_t n;
  CHECK_INT(od_segfile_list(sf, &ids, &n, &err), OD_OK);
  CHECK_INT(n, 1);
  CHECK_INT(ids[0], 7);
  free(ids);
  od_segfile_reader r = OD_SEGFILE_READER_INIT;
  od_segbuf b = {0};
  for (int i = 0; i < 5; i++) {
    uint32_t fs;
    CHECK_INT(od_segfile_read(sf, &r, 7, offs[i], offs[i] + 116, &b, &fs, &err), OD_OK);
    CHECK_INT(b.len, 100);
    char p[100];
    payload(i, p);
    CHECK(!memcmp(b.p, p, 100));
  }
  free(b.p);
  od_segfile_reader_close(&r);
  od_segfile_close(sf);
  seen s;
  uint64_t size;
  CHECK_INT(scan(NULL, 7, true, &s, &size, &err), OD_OK);
  CHECK_INT(s.n, 5);
  CHECK_INT(size, 5 * 116);
  for (int i = 0; i < 5; i++) CHECK_INT(s.ids[i], i);
  char path[128];
  seg_path(7, path, sizeof path);
  CHECK(file_has(path, MARKER)); /* plain: the marker is on disk (the sealed test checks it is not) */
  rm_dir();
}

TEST(torn_tail_cut_in_last_segment_error_in_earlier) {
  fresh_dir();
  od_segfile *sf = open_sf(NULL);
  write_seg(sf, 1, 0, 3, NULL);
  write_seg(sf, 2, 3, 3, NULL);
  od_segfile_close(sf);
  char p1[128], p2[128];
  seg_path(1, p1, sizeof p1);
  seg_path(2, p2, sizeof p2);
  CHECK(truncate(p1, 116 * 3 - 10) == 0);
  CHECK(truncate(p2, 116 * 3 - 10) == 0);
  seen s;
  uint64_t size;
  od_error err;
  CHECK_INT(scan(NULL, 1, false, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, p1);
  CHECK_CONTAINS(err.msg, "offset 232");
  CHECK_INT(scan(NULL, 2, true, &s, &size, &err), OD_OK);
  CHECK_INT(s.n, 2);
  struct stat st;
  stat(p2, &st);
  CHECK_INT(st.st_size, 232); /* cut at the torn frame */
  /* Zeros past a crash are a torn tail too; zeros followed by data are not. */
  int fd = open(p2, O_RDWR);
  uint8_t z[300] = {0};
  CHECK(pwrite(fd, z, sizeof z, 232) == (ssize_t)sizeof z);
  close(fd);
  CHECK_INT(scan(NULL, 2, true, &s, &size, &err), OD_OK);
  CHECK_INT(size, 232);
  fd = open(p2, O_RDWR);
  CHECK(pwrite(fd, z, 20, 232) == 20);
  CHECK(pwrite(fd, "data", 4, 260) == 4);
  close(fd);
  CHECK_INT(scan(NULL, 2, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "offset 232");
  rm_dir();
}

TEST(sealed_has_no_plaintext_and_reads_back) {
  fresh_dir();
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_segfile *sf = open_sf(kr);
  write_seg(sf, 1, 0, 4, NULL);
  od_segfile_close(sf);
  char path[128];
  seg_path(1, path, sizeof path);
  CHECK(!file_has(path, MARKER));
  CHECK(!file_has(path, "record"));
  seen s;
  uint64_t size;
  od_error err;
  CHECK_INT(scan(kr, 1, true, &s, &size, &err), OD_OK);
  CHECK_INT(s.n, 4);
  for (int i = 0; i < 4; i++) CHECK_INT(s.ids[i], i);
  /* Appending resumes after the last frame. */
  sf = open_sf(kr);
  CHECK_INT(od_segfile_resume(sf, 1, size, &err), OD_OK);
  char p[100];
  payload(4, p);
  uint64_t off;
  uint32_t fs;
  CHECK_INT(od_segfile_append(sf, p, 100, &off, &fs, &err), OD_OK);
  CHECK_INT(off, size);
  CHECK_INT(od_segfile_flush(sf, true, &err), OD_OK);
  od_segfile_close(sf);
  CHECK_INT(scan(kr, 1, true, &s, &size, &err), OD_OK);
  CHECK_INT(s.n, 5);
  CHECK_INT(s.ids[4], 4);
  od_keyring_free(kr);
  rm_dir();
}

TEST(sealed_tampered_byte_is_refused_not_cut) {
  fresh_dir();
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_segfile *sf = open_sf(kr);
  uint64_t offs[3];
  write_seg(sf, 1, 0, 3, offs);
  od_segfile_close(sf);
  char path[128];
  seg_path(1, path, sizeof path);
  /* A byte of the LAST record's ciphertext, CRC recomputed: authentication must catch it. */
  flip(path, (off_t)(offs[2] + 16 + 30));
  fix_crc(path, offs[2]);
  seen s;
  uint64_t size;
  od_error err;
  CHECK_INT(scan(kr, 1, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, path);
  char at[64];
  snprintf(at, sizeof at, "offset %llu", (unsigned long long)offs[2]);
  CHECK_CONTAINS(err.msg, at);
  CHECK_CONTAINS(err.msg, "does not authenticate");
  struct stat st;
  stat(path, &st);
  CHECK((uint64_t)st.st_size > offs[2] + 100); /* not cut */
  /* Without the CRC fix a flipped byte is a checksum mismatch: also fatal, never cut. */
  flip(path, (off_t)(offs[1] + 16 + 40));
  CHECK_INT(scan(kr, 1, true, &s, &size, &err), OD_EIO);
  snprintf(at, sizeof at, "offset %llu", (unsigned long long)offs[1]);
  CHECK_CONTAINS(err.msg, at);
  CHECK_CONTAINS(err.msg, "checksum");
  od_keyring_free(kr);
  rm_dir();
}

TEST(sealed_swapped_records_and_copied_file_are_refused) {
  fresh_dir();
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_segfile *sf = open_sf(kr);
  uint64_t offs[3];
  write_seg(sf, 1, 0, 3, offs);
  od_segfile_close(sf);
  char path[128], path2[128];
  seg_path(1, path, sizeof path);
  seg_path(2, path2, sizeof path2);
  /* A copy under another segment name: every record is bound to its file. */
  char cmd[300];
  snprintf(cmd, sizeof cmd, "cp %s %s", path, path2);
  CHECK(system(cmd) == 0);
  seen s;
  uint64_t size;
  od_error err;
  CHECK_INT(scan(kr, 2, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "offset 0");
  CHECK_CONTAINS(err.msg, "does not authenticate");
  unlink(path2);
  /* Swap records 0 and 1 (equal sizes; each frame's CRC stays valid). */
  size_t fsz = (size_t)(offs[1] - offs[0]);
  uint8_t *a = malloc(fsz), *b = malloc(fsz);
  int fd = open(path, O_RDWR);
  CHECK(pread(fd, a, fsz, (off_t)offs[0]) == (ssize_t)fsz);
  CHECK(pread(fd, b, fsz, (off_t)offs[1]) == (ssize_t)fsz);
  CHECK(pwrite(fd, b, fsz, (off_t)offs[0]) == (ssize_t)fsz);
  CHECK(pwrite(fd, a, fsz, (off_t)offs[1]) == (ssize_t)fsz);
  close(fd);
  free(a);
  free(b);
  CHECK_INT(scan(kr, 1, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "offset 0");
  CHECK_CONTAINS(err.msg, "does not authenticate");
  od_keyring_free(kr);
  rm_dir();
}

TEST(sealed_truncation_cut_mid_frame_only_in_last_segment) {
  fresh_dir();
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_segfile *sf = open_sf(kr);
  uint64_t offs[3];
  write_seg(sf, 1, 0, 3, offs);
  write_seg(sf, 2, 3, 3, NULL);
  od_segfile_close(sf);
  char p1[128], p2[128];
  seg_path(1, p1, sizeof p1);
  seg_path(2, p2, sizeof p2);
  CHECK(truncate(p1, (off_t)(offs[2] + 20)) == 0);
  CHECK(truncate(p2, (off_t)(offs[2] + 20)) == 0);
  seen s;
  uint64_t size;
  od_error err;
  CHECK_INT(scan(kr, 1, false, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "cut short");
  CHECK_INT(scan(kr, 2, true, &s, &size, &err), OD_OK);
  CHECK_INT(s.n, 2);
  CHECK_INT(s.ids[1], 4);
  CHECK_INT(size, offs[2]);
  od_keyring_free(kr);
  rm_dir();
}

TEST(wrong_key_missing_key_and_mixed_frames) {
  fresh_dir();
  od_keyring *kr = ring("k1", K1, NULL, NULL);
  od_segfile *sf = open_sf(kr);
  write_seg(sf, 1, 0, 2, NULL);
  od_segfile_close(sf);
  seen s;
  uint64_t size;
  od_error err;
  od_keyring *wrong = ring("k1", K2, NULL, NULL); /* same id, other key */
  CHECK_INT(scan(wrong, 1, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "does not authenticate");
  CHECK_CONTAINS(err.msg, "offset 0");
  od_keyring *other = ring("k9", K1, NULL, NULL); /* the key under another id */
  CHECK_INT(scan(other, 1, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "key id 'k1'");
  CHECK_INT(scan(NULL, 1, true, &s, &size, &err), OD_EIO); /* no keys configured */
  CHECK_CONTAINS(err.msg, "is encrypted (key id 'k1')");
  /* A plain segment read with a key configured is refused (planted, or written before). */
  sf = open_sf(NULL);
  write_seg(sf, 2, 5, 1, NULL);
  od_segfile_close(sf);
  CHECK_INT(scan(kr, 2, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "is not encrypted");
  od_keyring_free(kr);
  od_keyring_free(wrong);
  od_keyring_free(other);
  rm_dir();
}

TEST(rotation_new_key_seals_old_key_opens) {
  fresh_dir();
  od_keyring *old = ring("k1", K1, NULL, NULL);
  od_segfile *sf = open_sf(old);
  write_seg(sf, 1, 0, 2, NULL);
  od_segfile_close(sf);
  od_keyring *rot = ring("k2", K2, "k1", K1); /* k2 seals, k1 still opens */
  sf = open_sf(rot);
  write_seg(sf, 2, 2, 2, NULL);
  od_segfile_close(sf);
  seen s;
  uint64_t size;
  od_error err;
  CHECK_INT(scan(rot, 1, false, &s, &size, &err), OD_OK);
  CHECK_INT(s.n, 2);
  CHECK_INT(scan(rot, 2, true, &s, &size, &err), OD_OK);
  CHECK_INT(s.n, 2);
  CHECK_INT(s.ids[1], 3);
  od_keyring *only_new = ring("k2", K2, NULL, NULL);
  CHECK_INT(scan(only_new, 2, true, &s, &size, &err), OD_OK); /* the new segment needs only k2 */
  CHECK_INT(scan(only_new, 1, false, &s, &size, &err), OD_EIO); /* the old one names the key it needs */
  CHECK_CONTAINS(err.msg, "key id 'k1'");
  CHECK_INT(scan(old, 2, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "key id 'k2'");
  od_keyring_free(old);
  od_keyring_free(rot);
  od_keyring_free(only_new);
  rm_dir();
}

TEST(format_1_file_is_refused_with_advice) {
  fresh_dir();
  od_segfile *sf = open_sf(NULL);
  od_segfile_close(sf);
  char path[128];
  seg_path(1, path, sizeof path);
  FILE *f = fopen(path, "wb");
  uint8_t rec[64] = {'O', 'D', 'J', '1', 8};
  fwrite(rec, 1, sizeof rec, f);
  fclose(f);
  seen s;
  uint64_t size;
  od_error err;
  CHECK_INT(scan(NULL, 1, true, &s, &size, &err), OD_EIO);
  CHECK_CONTAINS(err.msg, "older odsync");
  CHECK_CONTAINS(err.msg, path);
  struct stat st;
  stat(path, &st);
  CHECK_INT(st.st_size, 64); /* not cut */
  rm_dir();
}


