/* config_global.c — the configuration's process-wide sections: `log` (and `log_level`), `tracing`,
 * `encryption` (keys by reference), `admin` (listen address, tokens, JWT, TLS) and `audit`.
 * Owns: nothing beyond what it stores in the od_config it is given (malloc'd strings and arrays,
 * released by od_config_free). Key material is read through ${env:}/${file:} references and never
 * quoted back in a message.
 * Never touches: pipelines, sources, sinks, files other than ${file:} targets, servers.
 */
#include "core/config_internal.h"

#include "common/seal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char *const ENC_KEYS[] = {"keys", NULL};
static const char *const ENC_KEY_KEYS[] = {"id", "key", NULL};
static const char *const AUDIT_KEYS[] = {"enabled", "max_bytes", "fsync_ms", NULL};
static const char *const TRACING_KEYS[] = {"endpoint", "sample_ratio", "service_name", NULL};
static const char *const ADMIN_KEYS[] = {"listen", "tokens", "jwt", "tls", NULL};
static const char *const ADMIN_TOKEN_KEYS[] = {"token", "role", NULL};
static const char *const ADMIN_JWT_KEYS[] = {"algorithm", "secret", "public_key", "audience", "issuer",
                                             "role_claim", "leeway_seconds", NULL};
static const char *const ADMIN_TLS_KEYS[] = {"cert", "key", NULL};
static const char *const ROLE_NAMES[] = {"viewer", "operator", "admin", NULL};
static const char *const LOG_KEYS[] = {"level", "format", NULL};
static const char *const LOG_FORMATS[] = {"text", "json", NULL};
static const char *const LOG_LEVELS[] = {"error", "warn", "info", "debug", NULL};

/* audit: { enabled: true, max_bytes: 64MiB, fsync_ms: 1000 } */
int parse_audit(pctx *p, od_audit_config *a, const yaml_node_t *n) {
  if (is_null(n)) return OD_OK;
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, "audit", "a mapping such as { enabled: true }");
  if (rc || (rc = check_mapping(p, n, "audit")) || (rc = check_known(p, n, "audit", AUDIT_KEYS))) return rc;
  yaml_node_t *v;
  if ((v = map_get(p, n, "enabled"))) {
    int choice;
    if ((rc = parse_choice(p, v, "audit.enabled", BOOLS, "a boolean", "true or false", &choice))) return rc;
    a->enabled = choice % 2 == 1;
  }
  if ((v = map_get(p, n, "max_bytes")) && (rc = num_size(p, v, "audit.max_bytes", 64 * KIB, 16 * GIB, &a->max_bytes)))
    return rc;
  if ((v = map_get(p, n, "fsync_ms"))) {
    long x;
    if ((rc = num_long(p, v, "audit.fsync_ms", 0, 60000, &x))) return rc;
    a->fsync_ms = (int)x;
  }
  return OD_OK;
}

int parse_log_level(pctx *p, const yaml_node_t *v, const char *path, char **out) {
  bool secret = false;
  int rc = scalar_value(p, v, path, out, &secret);
  if (rc) return rc;
  bool ok = false;
  for (size_t i = 0; LOG_LEVELS[i] && !ok; i++) ok = strcmp(*out, LOG_LEVELS[i]) == 0;
  if (ok) return OD_OK;
  char buf[SHOW_MAX + 8];
  const char *near = secret ? NULL : closest(*out, LOG_LEVELS);
  if (near)
    return fail_node(p, v, "%s %s is not a log level; did you mean '%s'? (expected one of "
                     "error, warn, info, debug)", path, shown(buf, sizeof buf, *out, secret), near);
  return fail_node(p, v, "%s %s is not a log level; expected one of error, warn, info, debug", path,
                   shown(buf, sizeof buf, *out, secret));
}

/* log: { level: info, format: text | json } */
int parse_log(pctx *p, od_config *cfg, const yaml_node_t *n) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, "log", "a mapping such as { level: info, format: json }");
  if (rc || (rc = check_mapping(p, n, "log")) || (rc = check_known(p, n, "log", LOG_KEYS))) return rc;
  yaml_node_t *v;
  if ((v = map_get(p, n, "level")) && (rc = parse_log_level(p, v, "log.level", &cfg->log_level))) return rc;
  if ((v = map_get(p, n, "format"))) {
    int choice;
    if ((rc = parse_choice(p, v, "log.format", LOG_FORMATS, "a log format", "text or json", &choice))) return rc;
    if (!(cfg->log_format = xstrdup(LOG_FORMATS[choice]))) return oom(p->err, p->file);
  }
  return OD_OK;
}

/* tracing: { endpoint: URL, sample_ratio: 0.01, service_name: odsync } */
int parse_tracing(pctx *p, od_tracing_config *t, const yaml_node_t *n) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, "tracing", "a mapping such as { endpoint: \"http://127.0.0.1:4318/v1/traces\" }");
  if (rc || (rc = check_mapping(p, n, "tracing")) || (rc = check_known(p, n, "tracing", TRACING_KEYS))) return rc;
  yaml_node_t *v = map_get(p, n, "endpoint");
  if (!v)
    return fail_node(p, n, "tracing: missing required key 'endpoint'; expected e.g. endpoint: "
                     "\"http://127.0.0.1:4318/v1/traces\"");
  if ((rc = scalar_value(p, v, "tracing.endpoint", &t->endpoint, &t->endpoint_secret))) return rc;
  t->line = nline(v);
  t->col = ncol(v);
  if (strncmp(t->endpoint, "http://", 7) != 0 && strncmp(t->endpoint, "https://", 8) != 0) {
    char buf[SHOW_MAX + 8];
    return fail_node(p, v, "tracing.endpoint %s is not an http:// or https:// URL",
                     shown(buf, sizeof buf, t->endpoint, t->endpoint_secret));
  }
  t->sample_ratio = 0.01;
  if ((v = map_get(p, n, "sample_ratio")) && (rc = num_double(p, v, "tracing.sample_ratio", 1, &t->sample_ratio)))
    return rc;
  bool secret = false;
  if ((v = map_get(p, n, "service_name"))) {
    if ((rc = scalar_value(p, v, "tracing.service_name", &t->service_name, &secret))) return rc;
  } else if (!(t->service_name = xstrdup("odsync"))) {
    return oom(p->err, p->file);
  }
  t->enabled = true;
  return OD_OK;
}

/* encryption: { keys: [{ id: ID, key: "${env:NAME}" }, ...] } — the first key is current. Each key
 * is checked here (a throwaway keyring) so that a bad key is a config error with its position. */
int parse_encryption(pctx *p, od_encryption_config *ec, const yaml_node_t *n) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, "encryption",
                       "a mapping such as { keys: [{ id: k1, key: \"${env:ODSYNC_STATE_KEY}\" }] }");
  if (rc || (rc = check_mapping(p, n, "encryption")) || (rc = check_known(p, n, "encryption", ENC_KEYS))) return rc;
  yaml_node_t *v = map_get(p, n, "keys");
  if (!v) return fail_node(p, n, "encryption: missing required key 'keys'");
  if ((rc = expect_kind(p, v, YAML_SEQUENCE_NODE, "encryption.keys", "a list of { id, key }"))) return rc;
  size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (cnt == 0 || cnt > OD_SEAL_KEYS_MAX)
    return fail_node(p, v, "encryption.keys: expected 1 to %d keys (the first one encrypts)", OD_SEAL_KEYS_MAX);
  if (!(ec->keys = calloc(cnt, sizeof *ec->keys))) return oom(p->err, p->file);
  od_keyring *kr = NULL;
  if ((rc = od_keyring_new(&kr, p->err))) return rc;
  for (size_t i = 0; i < cnt && rc == OD_OK; i++) {
    yaml_node_t *it = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
    char path[64], what[600];
    snprintf(path, sizeof path, "encryption.keys[%zu]", i);
    if ((rc = expect_kind(p, it, YAML_MAPPING_NODE, path, "a mapping { id: ID, key: \"${env:NAME}\" }")) ||
        (rc = check_mapping(p, it, path)) || (rc = check_known(p, it, path, ENC_KEY_KEYS)))
      break;
    od_encryption_key *k = &ec->keys[ec->nkeys++];
    yaml_node_t *iv = map_get(p, it, "id"), *kv = map_get(p, it, "key");
    if (!iv || !kv) {
      rc = fail_node(p, it, "%s: both 'id' and 'key' are required", path);
      break;
    }
    bool secret = false;
    if ((rc = scalar_value(p, iv, "encryption id", &k->id, &secret))) break;
    snprintf(what, sizeof what, "%s.key", path);
    if ((rc = scalar_value(p, kv, what, &k->key, &secret))) break;
    k->line = nline(kv);
    k->col = ncol(kv);
    if (!secret) {
      rc = fail_node(p, kv, "%s.key: write the key as a reference (\"${env:NAME}\" or \"${file:PATH}\"), not "
                     "in the configuration file", path);
      break;
    }
    snprintf(what, sizeof what, "%s:%d:%d: %s", p->file, k->line, k->col, path);
    rc = od_keyring_add(kr, k->id, k->key, i == 0, what, p->err);
  }
  od_keyring_free(kr);
  return rc;
}

/* admin.tokens: [{ token: SECRET, role: viewer|operator|admin }, ...] */
static int parse_admin_tokens(pctx *p, od_admin_config *a, const yaml_node_t *v) {
  int rc = expect_kind(p, v, YAML_SEQUENCE_NODE, "admin.tokens",
                       "a list such as [{ token: \"${env:ODSYNC_ADMIN_TOKEN}\", role: operator }]");
  if (rc) return rc;
  size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  if (n == 0) return fail_node(p, v, "admin.tokens is empty; expected at least one { token, role }");
  if (!(a->tokens = calloc(n, sizeof *a->tokens))) return oom(p->err, p->file);
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *it = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
    char path[64];
    snprintf(path, sizeof path, "admin.tokens[%zu]", i);
    if ((rc = expect_kind(p, it, YAML_MAPPING_NODE, path, "a mapping { token: SECRET, role: viewer }")) ||
        (rc = check_mapping(p, it, path)) || (rc = check_known(p, it, path, ADMIN_TOKEN_KEYS)))
      return rc;
    od_admin_token *t = &a->tokens[a->ntokens++];
    yaml_node_t *tv = map_get(p, it, "token"), *rv = map_get(p, it, "role");
    if (!tv || !rv) return fail_node(p, it, "%s: both 'token' and 'role' are required", path);
    char sub[80];
    snprintf(sub, sizeof sub, "%s.token", path);
    bool secret = false;
    if ((rc = scalar_value(p, tv, sub, &t->token, &secret))) return rc;
    t->line = nline(tv);
    t->col = ncol(tv);
    if (strlen(t->token) < 16)
      return fail_node(p, tv, "%s: a token must be at least 16 characters (use e.g. 32 random bytes in hex: "
                       "openssl rand -hex 32)", sub);
    snprintf(sub, sizeof sub, "%s.role", path);
    int role = 0;
    if ((rc = parse_choice(p, rv, sub, ROLE_NAMES, "a role", "viewer, operator, admin", &role))) return rc;
    t->role = role + 1;
  }
  return OD_OK;
}

/* admin.jwt: { algorithm: HS256|RS256, secret | public_key, audience, issuer, role_claim, leeway_seconds } */
static int parse_admin_jwt(pctx *p, od_admin_jwt_config *j, const yaml_node_t *v) {
  int rc = expect_kind(p, v, YAML_MAPPING_NODE, "admin.jwt",
                       "a mapping such as { algorithm: HS256, secret: \"${env:ODSYNC_JWT_SECRET}\" }");
  if (rc || (rc = check_mapping(p, v, "admin.jwt")) || (rc = check_known(p, v, "admin.jwt", ADMIN_JWT_KEYS))) return rc;
  static const char *const ALGS[] = {"HS256", "RS256", NULL};
  yaml_node_t *x = map_get(p, v, "algorithm");
  if (!x) return fail_node(p, v, "admin.jwt: missing required key 'algorithm' (HS256 or RS256)");
  int alg = 0;
  if ((rc = parse_choice(p, x, "admin.jwt.algorithm", ALGS, "a JWT algorithm", "HS256, RS256", &alg))) return rc;
  j->rs256 = alg == 1;
  j->line = nline(v);
  j->col = ncol(v);
  bool secret = false;
  yaml_node_t *sec = map_get(p, v, "secret"), *pk = map_get(p, v, "public_key");
  if (!j->rs256) {
    if (!sec || pk)
      return fail_node(p, v, "admin.jwt: HS256 takes 'secret' (by reference: \"${env:ODSYNC_JWT_SECRET}\") and no "
                       "public_key");
    if ((rc = scalar_value(p, sec, "admin.jwt.secret", &j->secret, &secret))) return rc;
    if (strlen(j->secret) < 32)
      return fail_node(p, sec, "admin.jwt.secret: an HS256 secret must be at least 32 bytes");
  } else {
    if (!pk || sec) return fail_node(p, v, "admin.jwt: RS256 takes 'public_key' (a PEM file) and no secret");
    if ((rc = scalar_value(p, pk, "admin.jwt.public_key", &j->public_key, &secret))) return rc;
  }
  if ((x = map_get(p, v, "audience")) && (rc = scalar_value(p, x, "admin.jwt.audience", &j->audience, &secret)))
    return rc;
  if ((x = map_get(p, v, "issuer")) && (rc = scalar_value(p, x, "admin.jwt.issuer", &j->issuer, &secret))) return rc;
  if ((x = map_get(p, v, "role_claim"))) {
    if ((rc = scalar_value(p, x, "admin.jwt.role_claim", &j->role_claim, &secret))) return rc;
  } else if (!(j->role_claim = xstrdup("role"))) {
    return oom(p->err, p->file);
  }
  long leeway = 30;
  if ((x = map_get(p, v, "leeway_seconds")) && (rc = num_long(p, x, "admin.jwt.leeway_seconds", 0, 600, &leeway)))
    return rc;
  j->leeway_s = (int)leeway;
  j->enabled = true;
  return OD_OK;
}

/* admin: { listen: "HOST:PORT" } — HOST a numeric IPv4 address, [IPv6] in brackets, or localhost. */
int parse_admin(pctx *p, od_admin_config *a, const yaml_node_t *n) {
  int rc = expect_kind(p, n, YAML_MAPPING_NODE, "admin", "a mapping such as { listen: \"127.0.0.1:7070\" }");
  if (rc || (rc = check_mapping(p, n, "admin")) || (rc = check_known(p, n, "admin", ADMIN_KEYS))) return rc;
  yaml_node_t *v = map_get(p, n, "listen");
  if (!v) return fail_node(p, n, "admin: missing required key 'listen'; expected e.g. listen: \"127.0.0.1:7070\"");
  bool secret = false;
  if ((rc = scalar_value(p, v, "admin.listen", &a->listen, &secret))) return rc;
  a->line = nline(v);
  a->col = ncol(v);
  char buf[SHOW_MAX + 8];
  const char *shown_v = shown(buf, sizeof buf, a->listen, secret);
  const char *colon = strrchr(a->listen, ':');
  char host[64];
  size_t hlen = colon ? (size_t)(colon - a->listen) : 0;
  if (!colon || hlen == 0 || hlen >= sizeof host)
    return fail_node(p, v, "admin.listen %s is not HOST:PORT; expected e.g. \"127.0.0.1:7070\" or \"[::1]:7070\"",
                     shown_v);
  memcpy(host, a->listen, hlen);
  host[hlen] = '\0';
  if (host[0] == '[') {
    if (hlen < 3 || host[hlen - 1] != ']')
      return fail_node(p, v, "admin.listen %s: an IPv6 address goes in brackets, e.g. \"[::1]:7070\"", shown_v);
    memmove(host, host + 1, hlen - 2);
    host[hlen - 2] = '\0';
  } else if (strchr(host, ':')) {
    return fail_node(p, v, "admin.listen %s: an IPv6 address goes in brackets, e.g. \"[::1]:7070\"", shown_v);
  }
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
  unsigned char addr[16];
  if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1)
    return fail_node(p, v, "admin.listen %s: '%s' is not a numeric IP address (or localhost); expected e.g. "
                     "\"127.0.0.1:7070\"", shown_v, host);
  long port;
  if (parse_long(colon + 1, &port) != 0 || port < 1 || port > 65535)
    return fail_node(p, v, "admin.listen %s: the port must be a number from 1 to 65535", shown_v);
  if (!(a->host = xstrdup(host))) return oom(p->err, p->file);
  a->port = (int)port;
  a->loopback = strncmp(a->host, "127.", 4) == 0 || strcmp(a->host, "::1") == 0;
  if ((v = map_get(p, n, "tokens")) && (rc = parse_admin_tokens(p, a, v))) return rc;
  if ((v = map_get(p, n, "jwt")) && (rc = parse_admin_jwt(p, &a->jwt, v))) return rc;
  if ((v = map_get(p, n, "tls"))) {
    if ((rc = expect_kind(p, v, YAML_MAPPING_NODE, "admin.tls", "a mapping { cert: FILE, key: FILE }")) ||
        (rc = check_mapping(p, v, "admin.tls")) || (rc = check_known(p, v, "admin.tls", ADMIN_TLS_KEYS)))
      return rc;
    yaml_node_t *c = map_get(p, v, "cert"), *k = map_get(p, v, "key");
    if (!c || !k) return fail_node(p, v, "admin.tls: both 'cert' and 'key' are required (PEM files)");
    if ((rc = scalar_value(p, c, "admin.tls.cert", &a->tls_cert, &secret)) ||
        (rc = scalar_value(p, k, "admin.tls.key", &a->tls_key, &secret)))
      return rc;
  }
  if (!a->loopback && a->ntokens == 0 && !a->jwt.enabled)
    return fail_node(p, n, "admin.listen %s listens beyond loopback, where the admin API requires authentication: "
                     "add admin.tokens (e.g. tokens: [{ token: \"${env:ODSYNC_ADMIN_TOKEN}\", role: viewer }]) or "
                     "admin.jwt, or listen on 127.0.0.1 (docs/SECURITY.md)", shown_v);
  a->enabled = true;
  return OD_OK;
}
