/* Unit tests for the `admin:` and `log:` sections of the configuration (src/core/config.c): absent means off,
 * HOST:PORT forms, and each error with its exact FILE:LINE:COL. */
#include "odsync/config.h"
#include "test.h"

#define PIPE                 \
  "pipelines:\n"             \
  "  - name: shop\n"         \
  "    source:\n"            \
  "      type: postgres\n"   \
  "    sink:\n"              \
  "      type: sqlite\n"

static od_config *parse_ok(const char *yaml) {
  od_config *c = NULL;
  od_error e = {0};
  int rc = od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, &e);
  if (rc) fprintf(stderr, "  unexpected error: %s\n", e.msg);
  CHECK_INT(rc, OD_OK);
  return c;
}

static const char *parse_err(const char *yaml, od_error *e) {
  od_config *c = (od_config *)1;
  memset(e, 0, sizeof *e);
  CHECK_INT(od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, e), OD_ECONFIG);
  CHECK(c == NULL);
  return e->msg;
}

TEST(admin_absent_is_off) {
  od_config *c = parse_ok(PIPE);
  CHECK(!c->admin.enabled);
  CHECK(c->admin.host == NULL);
  od_config_free(c);
}

TEST(admin_listen_forms) {
  od_config *c = parse_ok("admin: { listen: \"127.0.0.1:7070\" }\n" PIPE);
  CHECK(c->admin.enabled);
  CHECK_STR(c->admin.host, "127.0.0.1");
  CHECK_INT(c->admin.port, 7070);
  CHECK_INT(c->admin.line, 1);
  CHECK_INT(c->admin.col, 18);
  od_config_free(c);
  c = parse_ok(PIPE "admin:\n  listen: \"[::1]:9000\"\n");
  CHECK_STR(c->admin.host, "::1");
  CHECK_INT(c->admin.port, 9000);
  od_config_free(c);
  c = parse_ok("admin:\n  listen: localhost:8080\n" PIPE);
  CHECK_STR(c->admin.host, "127.0.0.1");
  CHECK_STR(c->admin.listen, "localhost:8080");
  od_config_free(c);
}

TEST(admin_errors_name_file_line_col) {
  od_error e;
  CHECK_STR(parse_err("admin:\n  listen: \"7070\"\n" PIPE, &e),
            "cfg.yaml:2:11: admin.listen '7070' is not HOST:PORT; expected e.g. \"127.0.0.1:7070\" or \"[::1]:7070\"");
  CHECK_STR(parse_err("admin:\n  listen: \"127.0.0.1:99999\"\n" PIPE, &e),
            "cfg.yaml:2:11: admin.listen '127.0.0.1:99999': the port must be a number from 1 to 65535");
  CHECK_STR(parse_err("admin:\n  listen: \"example.com:80\"\n" PIPE, &e),
            "cfg.yaml:2:11: admin.listen 'example.com:80': 'example.com' is not a numeric IP address (or "
            "localhost); expected e.g. \"127.0.0.1:7070\"");
  CHECK_STR(parse_err("admin:\n  listen: \"::1:80\"\n" PIPE, &e),
            "cfg.yaml:2:11: admin.listen '::1:80': an IPv6 address goes in brackets, e.g. \"[::1]:7070\"");
  CHECK_CONTAINS(parse_err("admin:\n  port: 7070\n" PIPE, &e), "cfg.yaml:2:3: ");
  CHECK_CONTAINS(e.msg, "listen");
  CHECK_CONTAINS(parse_err("admin: {}\n" PIPE, &e), "cfg.yaml:1:8: admin: missing required key 'listen'");
  CHECK_CONTAINS(parse_err("admin: \"127.0.0.1:7070\"\n" PIPE, &e), "cfg.yaml:1:8: admin: expected a mapping");
}

TEST(log_section) {
  od_config *c = parse_ok(PIPE);
  CHECK_STR(c->log_level, "info");
  CHECK_STR(c->log_format, "text");
  od_config_free(c);
  c = parse_ok("log: { level: debug, format: json }\n" PIPE);
  CHECK_STR(c->log_level, "debug");
  CHECK_STR(c->log_format, "json");
  od_config_free(c);
  c = parse_ok("log_level: warn\nlog: { format: json }\n" PIPE);
  CHECK_STR(c->log_level, "warn");
  od_config_free(c);
  od_error e;
  CHECK_CONTAINS(parse_err("log: { format: xml }\n" PIPE, &e), "cfg.yaml:1:16: log.format");
  CHECK_CONTAINS(e.msg, "text or json");
  CHECK_CONTAINS(parse_err("log: { level: verbose }\n" PIPE, &e), "cfg.yaml:1:15: log.level 'verbose' is not a log level");
  CHECK_STR(parse_err("log_level: info\nlog: { level: debug }\n" PIPE, &e),
            "cfg.yaml:1:12: log_level and log.level are both set; keep one (log.level)");
  CHECK_CONTAINS(parse_err("log: { colour: true }\n" PIPE, &e), "cfg.yaml:1:8: ");
}

TEST(alerts_section) {
  od_config *c = parse_ok(PIPE);
  CHECK(c->pipelines[0].alerts.anomalies);
  CHECK(c->pipelines[0].alerts.lag_seconds == 0);
  CHECK(c->pipelines[0].alerts.webhook == NULL);
  od_config_free(c);
  c = parse_ok(PIPE "    alerts: { lag_seconds: 2.5, latency_p95_seconds: 1, errors_per_minute: 3, anomalies: false,\n"
                    "              webhook: \"http://127.0.0.1:9/hook\" }\n");
  const od_alerts_config *a = &c->pipelines[0].alerts;
  CHECK(a->lag_seconds == 2.5 && a->latency_p95_seconds == 1 && a->errors_per_minute == 3 && !a->anomalies);
  CHECK_STR(a->webhook, "http://127.0.0.1:9/hook");
  od_config_free(c);
  od_error e;
  CHECK_STR(parse_err(PIPE "    alerts: { lag_seconds: -1 }\n", &e),
            "cfg.yaml:7:28: pipelines[0].alerts.lag_seconds: '-1' is not a number above 0 and at most 86400");
  CHECK_STR(parse_err(PIPE "    alerts: { webhook: \"ftp://x\" }\n", &e),
            "cfg.yaml:7:24: pipelines[0].alerts.webhook: 'ftp://x' is not an http:// or https:// URL");
  CHECK_CONTAINS(parse_err(PIPE "    alerts: { lag: 5 }\n", &e), "cfg.yaml:7:15: ");
  CHECK_CONTAINS(e.msg, "lag_seconds");
}

TEST(tracing_section) {
  od_config *c = parse_ok(PIPE);
  CHECK(!c->tracing.enabled);
  od_config_free(c);
  c = parse_ok("tracing: { endpoint: \"http://127.0.0.1:4318/v1/traces\" }\n" PIPE);
  CHECK(c->tracing.enabled);
  CHECK(c->tracing.sample_ratio == 0.01);
  CHECK_STR(c->tracing.service_name, "odsync");
  od_config_free(c);
  c = parse_ok("tracing: { endpoint: \"https://otel:4318/v1/traces\", sample_ratio: 1, service_name: sync-a }\n" PIPE);
  CHECK(c->tracing.sample_ratio == 1);
  CHECK_STR(c->tracing.service_name, "sync-a");
  od_config_free(c);
  od_error e;
  CHECK_STR(parse_err("tracing: { endpoint: \"localhost:4318\" }\n" PIPE, &e),
            "cfg.yaml:1:22: tracing.endpoint 'localhost:4318' is not an http:// or https:// URL");
  CHECK_STR(parse_err("tracing: { endpoint: \"http://x/v1/traces\", sample_ratio: 2 }\n" PIPE, &e),
            "cfg.yaml:1:58: tracing.sample_ratio: '2' is not a number above 0 and at most 1");
  CHECK_CONTAINS(parse_err("tracing: { sample_ratio: 1 }\n" PIPE, &e), "cfg.yaml:1:10: tracing: missing required key 'endpoint'");
}

TEST(admin_auth_section) {
  setenv("ODSYNC_TEST_TOK", "0123456789abcdef-token", 1);
  setenv("ODSYNC_TEST_JWT", "0123456789abcdef0123456789abcdef-jwt", 1);
  od_config *c = parse_ok("admin:\n  listen: \"0.0.0.0:7070\"\n"
                          "  tokens: [{ token: \"${env:ODSYNC_TEST_TOK}\", role: operator }]\n"
                          "  jwt: { algorithm: HS256, secret: \"${env:ODSYNC_TEST_JWT}\", audience: a, issuer: i }\n"
                          "  tls: { cert: /c.pem, key: /k.pem }\n" PIPE);
  CHECK(!c->admin.loopback);
  CHECK_INT(c->admin.ntokens, 1);
  CHECK_INT(c->admin.tokens[0].role, OD_ROLE_OPERATOR);
  CHECK_STR(c->admin.tokens[0].token, "0123456789abcdef-token");
  CHECK(c->admin.jwt.enabled && !c->admin.jwt.rs256);
  CHECK_STR(c->admin.jwt.role_claim, "role");
  CHECK_INT(c->admin.jwt.leeway_s, 30);
  CHECK_STR(c->admin.tls_cert, "/c.pem");
  od_config_free(c);
  c = parse_ok("admin: { listen: \"[::1]:7070\", jwt: { algorithm: RS256, public_key: /p.pem, role_claim: r } }\n" PIPE);
  CHECK(c->admin.loopback && c->admin.jwt.rs256);
  CHECK_STR(c->admin.jwt.public_key, "/p.pem");
  od_config_free(c);
  od_error e;
  CHECK_CONTAINS(parse_err("admin:\n  listen: \"0.0.0.0:7070\"\n" PIPE, &e),
                 "cfg.yaml:2:3: admin.listen '0.0.0.0:7070' listens beyond loopback, where the admin API requires "
                 "authentication");
  CHECK_STR(parse_err("admin: { listen: \"127.0.0.1:1\", tokens: [{ token: short, role: viewer }] }\n" PIPE, &e),
            "cfg.yaml:1:51: admin.tokens[0].token: a token must be at least 16 characters (use e.g. 32 random bytes "
            "in hex: openssl rand -hex 32)");
  CHECK_CONTAINS(parse_err("admin: { listen: \"127.0.0.1:1\", tokens: [{ token: 0123456789abcdef, role: root }] }\n" PIPE,
                           &e),
                 "admin.tokens[0].role: 'root' is not a role");
  CHECK_CONTAINS(parse_err("admin: { listen: \"127.0.0.1:1\", jwt: { algorithm: none, secret: x } }\n" PIPE, &e),
                 "admin.jwt.algorithm: 'none' is not a JWT algorithm");
  CHECK_CONTAINS(parse_err("admin: { listen: \"127.0.0.1:1\", jwt: { algorithm: RS256, secret: x } }\n" PIPE, &e),
                 "admin.jwt: RS256 takes 'public_key' (a PEM file) and no secret");
  CHECK_CONTAINS(parse_err("admin: { listen: \"127.0.0.1:1\", jwt: { algorithm: HS256, secret: \"${env:ODSYNC_TEST_TOK}\" } }\n" PIPE,
                           &e),
                 "admin.jwt.secret: an HS256 secret must be at least 32 bytes");
  CHECK(strstr(e.msg, "0123456789abcdef-token") == NULL);
  CHECK_CONTAINS(parse_err("admin: { listen: \"127.0.0.1:1\", tls: { cert: /c.pem } }\n" PIPE, &e),
                 "admin.tls: both 'cert' and 'key' are required");
}
