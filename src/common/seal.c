/* seal.c — see seal.h. AES-256-GCM with OpenSSL EVP; keys in a locked, non-dumped page. */
#include "common/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC0 'O'
#define MAGIC1 'S'
#define VERSION 1
#define RECORD_MAX (1u << 30) /* 1 GiB: larger records are refused */

typedef struct kr_key {
  char id[OD_SEAL_ID_MAX + 1];
  unsigned char key[OD_SEAL_KEY_BYTES];
} kr_key;

struct od_keyring {
  kr_key *keys; /* OD_SEAL_KEYS_MAX entries in `bytes` page-aligned bytes, mlocked when allowed */
  size_t bytes;
  bool locked;
  int n;
  int current; /* index of the sealing key, -1: none */
};

int od_keyring_new(od_keyring **out, od_error *err) {
  od_keyring *kr = calloc(1, sizeof *kr);
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  size_t bytes = ((OD_SEAL_KEYS_MAX * sizeof(kr_key)) + (size_t)page - 1) / (size_t)page * (size_t)page;
  void *mem = NULL;
  if (!kr || posix_memalign(&mem, (size_t)page, bytes) != 0) {
    free(kr);
    return OD_FAIL(err, OD_ENOMEM, "encryption keyring: out of memory");
  }
  memset(mem, 0, bytes);
  kr->keys = mem;
  kr->bytes = bytes;
  kr->locked = mlock(mem, bytes) == 0; /* best effort: RLIMIT_MEMLOCK may forbid it */
#ifdef MADV_DONTDUMP
  madvise(mem, bytes, MADV_DONTDUMP); /* keep the keys out of core dumps */
#endif
  kr->current = -1;
  *out = kr;
  return OD_OK;
}

void od_keyring_free(od_keyring *kr) {
  if (!kr) return;
  OPENSSL_cleanse(kr->keys, kr->bytes);
  if (kr->locked) munlock(kr->keys, kr->bytes);
  free(kr->keys);
  free(kr);
}

const char *od_keyring_current(const od_keyring *kr) {
  return kr && kr->current >= 0 ? kr->keys[kr->current].id : NULL;
}

int od_keyring_from_config(const od_config *cfg, od_keyring **out, od_error *err) {
  return od_keyring_from_keys(&cfg->encryption, cfg->file, out, err);
}

int od_keyring_from_keys(const od_encryption_config *enc, const char *file, od_keyring **out, od_error *err) {
  *out = NULL;
  if (!enc || !enc->nkeys) return OD_OK;
  od_keyring *kr = NULL;
  int rc = od_keyring_new(&kr, err);
  for (int i = 0; !rc && i < enc->nkeys; i++) {
    const od_encryption_key *k = &enc->keys[i];
    char what[600];
    snprintf(what, sizeof what, "%s:%d:%d: encryption.keys[%d]", file ? file : "<config>", k->line, k->col, i);
    rc = od_keyring_add(kr, k->id, k->key, i == 0, what, err);
  }
  if (rc) {
    od_keyring_free(kr);
    return rc;
  }
  *out = kr;
  return OD_OK;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* 64 hex digits or base64 of 32 bytes (surrounding whitespace ignored) -> out[32]. */
static bool decode_key(const char *text, unsigned char *out) {
  while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r') text++;
  size_t len = strlen(text);
  while (len && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' || text[len - 1] == '\r'))
    len--;
  if (len == 2 * OD_SEAL_KEY_BYTES) {
    bool ok = true;
    for (size_t i = 0; i < OD_SEAL_KEY_BYTES; i++) {
      int hi = hexval((unsigned char)text[2 * i]), lo = hexval((unsigned char)text[2 * i + 1]);
      if (hi < 0 || lo < 0) ok = false;
      out[i] = (unsigned char)((hi & 15) << 4 | (lo & 15));
    }
    if (ok) return true;
  }
  if (len == 44 && text[43] == '=' && text[42] != '=') {
    unsigned char tmp[33];
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)text, 44);
    bool ok = n == 33; /* 32 bytes and one padding byte */
    if (ok) memcpy(out, tmp, OD_SEAL_KEY_BYTES);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return ok;
  }
  return false;
}

int od_keyring_add(od_keyring *kr, const char *id, const char *key_text, bool current, const char *what,
                   od_error *err) {
  size_t idlen = id ? strlen(id) : 0;
  if (idlen == 0 || idlen > OD_SEAL_ID_MAX)
    return OD_FAIL(err, OD_ECONFIG, "%s: the key id must be 1 to %d characters", what, OD_SEAL_ID_MAX);
  for (size_t i = 0; i < idlen; i++)
    if (id[i] < 0x21 || id[i] > 0x7e)
      return OD_FAIL(err, OD_ECONFIG, "%s: the key id must be printable ASCII without spaces", what);
  for (int i = 0; i < kr->n; i++)
    if (!strcmp(kr->keys[i].id, id)) return OD_FAIL(err, OD_ECONFIG, "%s: key id %s is used twice", what, id);
  if (kr->n == OD_SEAL_KEYS_MAX) return OD_FAIL(err, OD_ECONFIG, "%s: at most %d keys", what, OD_SEAL_KEYS_MAX);
  kr_key *k = &kr->keys[kr->n];
  if (!key_text || !decode_key(key_text, k->key)) {
    OPENSSL_cleanse(k->key, sizeof k->key);
    return OD_FAIL(err, OD_ECONFIG, "%s (id %s): the key is not 32 bytes as 64 hex digits or base64 (make one "
                   "with: openssl rand -hex 32)", what, id);
  }
  memcpy(k->id, id, idlen + 1);
  if (current && kr->current < 0) kr->current = kr->n;
  kr->n++;
  return OD_OK;
}

static const kr_key *find_key(const od_keyring *kr, const unsigned char *id, size_t idlen) {
  for (int i = 0; i < kr->n; i++)
    if (strlen(kr->keys[i].id) == idlen && !memcmp(kr->keys[i].id, id, idlen)) return &kr->keys[i];
  return NULL;
}

size_t od_seal_overhead(const od_keyring *kr) {
  const char *id = od_keyring_current(kr);
  return 4 + (id ? strlen(id) : 0) + OD_SEAL_NONCE_BYTES + OD_SEAL_TAG_BYTES;
}

/* The associated data: "odsync-seal-v1\0" name "\0" index(8, BE) id. */
static size_t make_aad(unsigned char *aad, size_t size, const char *name, uint64_t index, const char *id,
                       size_t idlen) {
  static const char tag[] = "odsync-seal-v1";
  size_t nlen = strnlen(name, 255), n = 0;
  if (sizeof tag + nlen + 1 + 8 + idlen > size) return 0;
  memcpy(aad, tag, sizeof tag); /* with its NUL */
  n = sizeof tag;
  memcpy(aad + n, name, nlen);
  n += nlen;
  aad[n++] = 0;
  for (int i = 7; i >= 0; i--) aad[n++] = (unsigned char)(index >> (8 * i));
  memcpy(aad + n, id, idlen);
  return n + idlen;
}

int od_seal(const od_keyring *kr, const char *name, uint64_t index, const void *pt, size_t len, unsigned char **out,
            size_t *out_len, od_error *err) {
  *out = NULL;
  if (!kr || kr->current < 0)
    return OD_FAIL(err, OD_ECONFIG, "%s: cannot encrypt: no current encryption key", name);
  if (len > RECORD_MAX) return OD_FAIL(err, OD_EINVAL, "%s: record %llu is larger than 1 GiB", name,
                                       (unsigned long long)index);
  const kr_key *k = &kr->keys[kr->current];
  size_t idlen = strlen(k->id);
  size_t total = 4 + idlen + OD_SEAL_NONCE_BYTES + len + OD_SEAL_TAG_BYTES;
  unsigned char *b = malloc(total);
  if (!b) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory sealing %zu bytes", name, len);
  b[0] = MAGIC0;
  b[1] = MAGIC1;
  b[2] = VERSION;
  b[3] = (unsigned char)idlen;
  memcpy(b + 4, k->id, idlen);
  unsigned char *nonce = b + 4 + idlen, *ct = nonce + OD_SEAL_NONCE_BYTES, *tag = ct + len;
  unsigned char aad[400];
  size_t aadlen = make_aad(aad, sizeof aad, name, index, k->id, idlen);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int outl = 0, ok = c && aadlen && RAND_bytes(nonce, OD_SEAL_NONCE_BYTES) == 1 &&
                     EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
                     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, OD_SEAL_NONCE_BYTES, NULL) == 1 &&
                     EVP_EncryptInit_ex(c, NULL, NULL, k->key, nonce) == 1 &&
                     EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aadlen) == 1 &&
                     (len == 0 || EVP_EncryptUpdate(c, ct, &outl, pt, (int)len) == 1) &&
                     EVP_EncryptFinal_ex(c, ct + (len ? outl : 0), &outl) == 1 &&
                     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, OD_SEAL_TAG_BYTES, tag) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) {
    OPENSSL_cleanse(b, total);
    free(b);
    return OD_FAIL(err, OD_EIO, "%s: encrypting record %llu failed (OpenSSL)", name, (unsigned long long)index);
  }
  *out = b;
  *out_len = total;
  return OD_OK;
}

int od_open(const od_keyring *kr, const char *name, uint64_t index, const void *blob, size_t len, unsigned char **out,
            size_t *out_len, od_error *err) {
  const unsigned char *b = blob;
  *out = NULL;
  if (len < 4 || b[0] != MAGIC0 || b[1] != MAGIC1)
    return OD_FAIL(err, OD_EIO, "%s: record %llu is not an odsync sealed record (encrypted at rest); the file is "
                   "damaged or was written without encryption", name, (unsigned long long)index);
  if (b[2] != VERSION)
    return OD_FAIL(err, OD_EIO, "%s: record %llu has seal version %d; this odsync reads version %d", name,
                   (unsigned long long)index, b[2], VERSION);
  size_t idlen = b[3];
  if (len < 4 + idlen + OD_SEAL_NONCE_BYTES + OD_SEAL_TAG_BYTES)
    return OD_FAIL(err, OD_EIO, "%s: record %llu is truncated (%zu bytes)", name, (unsigned long long)index, len);
  const kr_key *k = find_key(kr, b + 4, idlen);
  if (!k)
    return OD_FAIL(err, OD_EIO, "%s: record %llu was sealed with key id '%.*s', which is not in encryption.keys; "
                   "add that key (old keys stay readable) to read it", name, (unsigned long long)index,
                   (int)(idlen > 64 ? 64 : idlen), (const char *)(b + 4));
  const unsigned char *nonce = b + 4 + idlen, *ct = nonce + OD_SEAL_NONCE_BYTES;
  size_t ctlen = len - 4 - idlen - OD_SEAL_NONCE_BYTES - OD_SEAL_TAG_BYTES;
  const unsigned char *tag = ct + ctlen;
  unsigned char *pt = malloc(ctlen + 1);
  if (!pt) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory opening %zu bytes", name, ctlen);
  unsigned char aad[400];
  size_t aadlen = make_aad(aad, sizeof aad, name, index, k->id, idlen);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int outl = 0, ok = c && aadlen && ctlen <= RECORD_MAX &&
                     EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
                     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, OD_SEAL_NONCE_BYTES, NULL) == 1 &&
                     EVP_DecryptInit_ex(c, NULL, NULL, k->key, nonce) == 1 &&
                     EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aadlen) == 1 &&
                     (ctlen == 0 || EVP_DecryptUpdate(c, pt, &outl, ct, (int)ctlen) == 1) &&
                     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, OD_SEAL_TAG_BYTES, (void *)tag) == 1 &&
                     EVP_DecryptFinal_ex(c, pt + (ctlen ? outl : 0), &outl) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) {
    OPENSSL_cleanse(pt, ctlen + 1);
    free(pt);
    return OD_FAIL(err, OD_EIO, "%s: record %llu does not authenticate (AES-256-GCM, key id %s): it was altered, "
                   "moved from another position or file, or sealed with another key of that id; refusing to read "
                   "it (restore the file from a backup)", name, (unsigned long long)index, k->id);
  }
  pt[ctlen] = '\0';
  *out = pt;
  *out_len = ctlen;
  return OD_OK;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int write_all(int fd, const unsigned char *p, size_t len) {
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int od_seal_file_write(const od_keyring *kr, const char *path, const void *data, size_t len, od_error *err) {
  unsigned char *blob = NULL;
  size_t blen = 0;
  int rc = od_seal(kr, base_name(path), 0, data, len, &blob, &blen, err);
  if (rc) return rc;
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 8);
  if (!tmp) {
    free(blob);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", path);
  }
  snprintf(tmp, plen + 8, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int e = fd < 0 ? errno : write_all(fd, blob, blen);
  if (!e && fsync(fd) != 0) e = errno;
  if (fd >= 0 && close(fd) != 0 && !e) e = errno;
  if (!e && rename(tmp, path) != 0) e = errno;
  free(blob);
  if (e) {
    unlink(tmp);
    free(tmp);
    return OD_FAIL(err, OD_EIO, "%s: cannot write the encrypted file: %s", path, strerror(e));
  }
  free(tmp);
  return OD_OK;
}

int od_seal_file_read(const od_keyring *kr, const char *path, unsigned char **out, size_t *out_len, od_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OD_FAIL(err, OD_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > RECORD_MAX + 1024u) {
    close(fd);
    return OD_FAIL(err, OD_EIO, "%s: cannot read (not a regular file of at most 1 GiB)", path);
  }
  size_t size = (size_t)st.st_size, got = 0;
  unsigned char *buf = malloc(size ? size : 1);
  while (buf && got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  if (!buf || got != size) {
    free(buf);
    return OD_FAIL(err, OD_EIO, "%s: read failed", path);
  }
  int rc = od_open(kr, base_name(path), 0, buf, size, out, out_len, err);
  free(buf);
  if (rc) od_error_prefix(err, "encrypted file %s: ", path);
  return rc;
}

int od_seal_append(int fd, const od_keyring *kr, const char *name, uint64_t index, const void *rec, size_t len,
                   od_error *err) {
  unsigned char *blob = NULL;
  size_t blen = 0;
  int rc = od_seal(kr, name, index, rec, len, &blob, &blen, err);
  if (rc) return rc;
  unsigned char *frame = malloc(4 + blen);
  if (!frame) {
    free(blob);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", name);
  }
  frame[0] = (unsigned char)(blen >> 24);
  frame[1] = (unsigned char)(blen >> 16);
  frame[2] = (unsigned char)(blen >> 8);
  frame[3] = (unsigned char)blen;
  memcpy(frame + 4, blob, blen);
  free(blob);
  int e = write_all(fd, frame, 4 + blen);
  free(frame);
  if (e) return OD_FAIL_RETRY(err, OD_EIO, "%s: cannot append record %llu: %s", name, (unsigned long long)index,
                              strerror(e));
  return OD_OK;
}

int od_seal_next(const unsigned char *buf, size_t size, size_t *pos, const od_keyring *kr, const char *name,
                 uint64_t index, unsigned char **out, size_t *out_len, od_error *err) {
  *out = NULL;
  if (*pos >= size || size - *pos < 4) return OD_EOF;
  const unsigned char *f = buf + *pos;
  size_t blen = (size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3];
  if (blen > size - *pos - 4) return OD_EOF; /* torn last frame */
  int rc = od_open(kr, name, index, f + 4, blen, out, out_len, err);
  if (rc == OD_OK) *pos += 4 + blen;
  return rc;
}

#define LINE_PREFIX "sealed:"

bool od_seal_is_line(const char *line) { return strncmp(line, LINE_PREFIX, sizeof LINE_PREFIX - 1) == 0; }

int od_seal_line(const od_keyring *kr, const char *name, uint64_t index, const void *text, size_t len, char **out,
                 size_t *out_len, od_error *err) {
  unsigned char *blob = NULL;
  size_t blen = 0;
  *out = NULL;
  int rc = od_seal(kr, name, index, text, len, &blob, &blen, err);
  if (rc) return rc;
  size_t cap = sizeof LINE_PREFIX + 4 * ((blen + 2) / 3) + 2;
  char *line = blen <= INT_MAX / 2 ? malloc(cap) : NULL;
  if (!line) {
    free(blob);
    return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", name);
  }
  memcpy(line, LINE_PREFIX, sizeof LINE_PREFIX - 1);
  int n = EVP_EncodeBlock((unsigned char *)line + sizeof LINE_PREFIX - 1, blob, (int)blen);
  free(blob);
  size_t l = sizeof LINE_PREFIX - 1 + (size_t)n;
  line[l++] = '\n';
  line[l] = '\0';
  *out = line;
  *out_len = l;
  return OD_OK;
}

int od_open_line(const od_keyring *kr, const char *name, uint64_t index, const char *line, char **out,
                 size_t *out_len, od_error *err) {
  *out = NULL;
  if (!od_seal_is_line(line))
    return OD_FAIL(err, OD_EIO, "%s: record %llu is not a sealed line", name, (unsigned long long)index);
  const char *b64 = line + sizeof LINE_PREFIX - 1;
  size_t n = strlen(b64);
  while (n && (b64[n - 1] == '\r' || b64[n - 1] == ' ')) n--;
  if (n == 0 || n % 4 != 0 || n > (size_t)INT_MAX)
    return OD_FAIL(err, OD_EIO, "%s: record %llu is not valid base64 (damaged)", name, (unsigned long long)index);
  unsigned char *blob = malloc(n / 4 * 3 + 1);
  if (!blob) return OD_FAIL(err, OD_ENOMEM, "%s: out of memory", name);
  int got = EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)n);
  if (got < 0) {
    free(blob);
    return OD_FAIL(err, OD_EIO, "%s: record %llu is not valid base64 (damaged)", name, (unsigned long long)index);
  }
  size_t blen = (size_t)got - (b64[n - 1] == '=') - (b64[n - 2] == '=');
  unsigned char *pt = NULL;
  int rc = od_open(kr, name, index, blob, blen, &pt, out_len, err);
  free(blob);
  *out = (char *)pt;
  return rc;
}
