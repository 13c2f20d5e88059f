/* Unit tests for the admin API's credential checks (src/server/admin_auth.c) without a server:
 * static tokens, HS256 JWTs made here with OpenSSL's HMAC (valid, expired, not yet valid, forged,
 * alg none, wrong algorithm, missing exp, audience as a string and a list, issuer, role claim),
 * malformed and oversized credentials and random garbage with two dots (under valgrind in
 * scripts/test.sh: the attacker-facing parse path must not leak or read out of bounds). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

#include "odsync/config.h"
#include "server/admin_auth.h"
#include "test.h"

#define SECRET "0123456789abcdef0123456789abcdef-secret"

static void b64url(const char *in, size_t len, char *out) {
  unsigned char tmp[2048];
  int n = EVP_EncodeBlock(tmp, (const unsigned char *)in, (int)len);
  int j = 0;
  for (int i = 0; i < n; i++) {
    char c = (char)tmp[i];
    if (c == '=') break;
    out[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  out[j] = '\0';
}

/* "Bearer " + a JWT with `header` and `payload`, signed with HMAC-SHA-256 under `key`. */
static char *jwt(const char *header, const char *payload, const char *key) {
  static char buf[4096];
  char h[1024], p[2048], s[128];
  b64url(header, strlen(header), h);
  b64url(payload, strlen(payload), p);
  char signing[3200];
  snprintf(signing, sizeof signing, "%s.%s", h, p);
  unsigned char mac[32];
  unsigned int maclen = 0;
  HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)signing, strlen(signing), mac, &maclen);
  b64url((const char *)mac, maclen, s);
  snprintf(buf, sizeof buf, "Bearer %s.%s", signing, key ? s : "");
  return buf;
}

static od_admin_config cfg_with(od_admin_token *toks, int n) {
  od_admin_config ac = {0};
  ac.tokens = toks;
  ac.ntokens = n;
  ac.jwt.enabled = true;
  ac.jwt.secret = SECRET;
  ac.jwt.role_claim = "role";
  ac.jwt.leeway_s = 30;
  return ac;
}

static int check(od_admin_auth *a, const char *authz, char *who, char *why) {
  return od_admin_auth_check(a, authz, who, 160, why, 240);
}

TEST(static_tokens) {
  od_admin_token toks[] = {{.token = "viewer-token-0123456789", .role = OD_ROLE_VIEWER},
                           {.token = "admin-token-0123456789", .role = OD_ROLE_ADMIN}};
  od_admin_config ac = cfg_with(toks, 2);
  ac.jwt.enabled = false;
  od_admin_auth *a = NULL;
  od_error e = {0};
  CHECK_INT(od_admin_auth_new(&ac, "t", &a, &e), OD_OK);
  CHECK(od_admin_auth_enabled(a));
  char who[160], why[240];
  CHECK_INT(check(a, "Bearer admin-token-0123456789", who, why), OD_ROLE_ADMIN);
  CHECK_STR(who, "token#1");
  CHECK_INT(check(a, "bearer   viewer-token-0123456789", who, why), OD_ROLE_VIEWER);
  CHECK_STR(who, "token#0");
  CHECK_INT(check(a, "Bearer viewer-token-012345678", who, why), OD_ROLE_NONE); /* a prefix */
  CHECK_STR(why, "the bearer credential matches no configured token");
  CHECK_INT(check(a, "Bearer viewer-token-0123456789x", who, why), OD_ROLE_NONE);
  CHECK_INT(check(a, NULL, who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "no credentials");
  CHECK_INT(check(a, "Basic dXNlcjpwYXNz", who, why), OD_ROLE_NONE);
  CHECK_INT(check(a, "Bearer ", who, why), OD_ROLE_NONE);
  static char big[9000];
  memcpy(big, "Bearer ", 7);
  memset(big + 7, 'a', sizeof big - 8);
  CHECK_INT(check(a, big, who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "longer than 8192 bytes");
  /* A JWT-looking credential when no jwt is configured. */
  CHECK_INT(check(a, jwt("{\"alg\":\"HS256\"}", "{\"role\":\"admin\",\"exp\":9999999999}", SECRET), who, why),
            OD_ROLE_NONE);
  od_admin_auth_free(a);
}

TEST(jwt_hs256_matrix) {
  od_admin_config ac = cfg_with(NULL, 0);
  ac.jwt.audience = "odsync";
  ac.jwt.issuer = "idp";
  od_admin_auth *a = NULL;
  od_error e = {0};
  CHECK_INT(od_admin_auth_new(&ac, "t", &a, &e), OD_OK);
  char who[160], why[240], pl[512];
  long now = (long)time(NULL);
  const char *H = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
#define CLAIMS(role, aud, iss, exp, extra) \
  (snprintf(pl, sizeof pl, "{\"sub\":\"al\\nice\",\"role\":\"%s\",\"aud\":%s,\"iss\":\"%s\",\"exp\":%ld%s}", role, aud, \
            iss, exp, extra), pl)
  CHECK_INT(check(a, jwt(H, CLAIMS("operator", "\"odsync\"", "idp", now + 60, ""), SECRET), who, why), OD_ROLE_OPERATOR);
  CHECK_STR(who, "jwt:al?ice"); /* a control character in sub never reaches the log */
  CHECK_INT(check(a, jwt(H, CLAIMS("viewer", "[\"x\",\"odsync\"]", "idp", now + 60, ""), SECRET), who, why),
            OD_ROLE_VIEWER);
  CHECK_INT(check(a, jwt(H, CLAIMS("viewer", "[\"x\",\"y\"]", "idp", now + 60, ""), SECRET), who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "audience");
  CHECK_INT(check(a, jwt(H, CLAIMS("viewer", "\"odsync\"", "evil", now + 60, ""), SECRET), who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "issuer");
  /* Expiry with the leeway: 20 s ago passes (30 s leeway), 40 s ago does not. */
  CHECK_INT(check(a, jwt(H, CLAIMS("viewer", "\"odsync\"", "idp", now - 20, ""), SECRET), who, why), OD_ROLE_VIEWER);
  CHECK_INT(check(a, jwt(H, CLAIMS("viewer", "\"odsync\"", "idp", now - 40, ""), SECRET), who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "the JWT expired");
  char nbf[64];
  snprintf(nbf, sizeof nbf, ",\"nbf\":%ld", now + 3600);
  CHECK_INT(check(a, jwt(H, CLAIMS("viewer", "\"odsync\"", "idp", now + 7200, nbf), SECRET), who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "not valid before");
  CHECK_INT(check(a, jwt(H, "{\"role\":\"admin\",\"aud\":\"odsync\",\"iss\":\"idp\"}", SECRET), who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "no exp claim");
  CHECK_INT(check(a, jwt(H, CLAIMS("root", "\"odsync\"", "idp", now + 60, ""), SECRET), who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "is not a role");
  CHECK_INT(check(a, jwt(H, "{\"aud\":\"odsync\",\"iss\":\"idp\",\"exp\":9999999999}", SECRET), who, why), OD_ROLE_NONE);
  CHECK_CONTAINS(why, "no 'role' claim");
  /* Forged, alg none (with and without a signature), another algorithm in the header. */
  CHECK_INT(check(a, jwt(H, CLAIMS("admin", "\"odsync\"", "idp", now + 60, ""), "another-secret-0123456789abcdef0123"),
                  who, why),
            OD_ROLE_NONE);
  CHECK_CONTAINS(why, "signature does not verify");
  char none[2048];
  snprintf(none, sizeof none, "%s", jwt("{\"alg\":\"none\"}", CLAIMS("admin", "\"odsync\"", "idp", now + 60, ""), SECRET));
  char *dot = strrchr(none, '.');
  CHECK_INT(check(a, none, who, why), OD_ROLE_NONE); /* none with an HMAC signature */
  dot[1] = '\0';
  CHECK_INT(check(a, none, who, why), OD_ROLE_NONE); /* none, empty signature */
  CHECK_INT(check(a, jwt("{\"alg\":\"HS512\"}", CLAIMS("admin", "\"odsync\"", "idp", now + 60, ""), SECRET), who, why),
            OD_ROLE_NONE);
  /* Garbage with two dots: never accepted, never crashes. */
  /* Shapes libjwt's base64 decoding mishandles (empty or 1-character segments, a length of 4k+1):
   * refused before it sees them (valgrind runs this test). */
  const char *shapes[] = {"Bearer a..b", "Bearer .abcd.abcd", "Bearer abcd.abcd.", "Bearer abcd.a.abcd",
                          "Bearer abcde.abcd.abcd", "Bearer abcd.abcd", "Bearer abcd.abcd.abcd.abcd", "Bearer ab+d.abcd.abcd"};
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) CHECK_INT(check(a, shapes[i], who, why), OD_ROLE_NONE);
  unsigned int seed = 12345;
  char junk[300];
  for (int i = 0; i < 2000; i++) {
    int n = 9 + (int)(rand_r(&seed) % 250);
    memcpy(junk, "Bearer ", 7);
    for (int k = 7; k < n; k++) junk[k] = (char)(33 + rand_r(&seed) % 94);
    junk[7 + rand_r(&seed) % (unsigned)(n - 7)] = '.';
    junk[7 + rand_r(&seed) % (unsigned)(n - 7)] = '.';
    junk[n] = '\0';
    CHECK_INT(check(a, junk, who, why), OD_ROLE_NONE);
  }
  od_admin_auth_free(a);
}

TEST(rs256_key_file_errors) {
  od_admin_config ac = cfg_with(NULL, 0);
  ac.jwt.rs256 = true;
  ac.jwt.secret = NULL;
  ac.jwt.public_key = "/nonexistent/key.pem";
  od_admin_auth *a = NULL;
  od_error e = {0};
  CHECK_INT(od_admin_auth_new(&ac, "cfg.yaml:3:3: admin", &a, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:3:3: admin: admin.jwt.public_key /nonexistent/key.pem cannot be read");
  ac.jwt.public_key = ODSYNC_SOURCE_DIR "/README.md";
  CHECK_INT(od_admin_auth_new(&ac, "w", &a, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "is not a PEM public key");
}
