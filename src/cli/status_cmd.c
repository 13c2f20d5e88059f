/* status_cmd.c — `odsync status [-c FILE | --url URL]`: asks a running odsync's admin server for
 * its status table (GET /status?format=text, over libcurl) and prints it.
 * Owns: the one HTTP request. Never touches pipelines, sources or sinks (it reads the config only
 * for admin.listen). */
#include "cli/status_cmd.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/sqlbuf.h"
#include "odsync/config.h"

static size_t collect(char *data, size_t size, size_t n, void *ctx) {
  od_sqlbuf *b = ctx;
  size_t len = size * n;
  if (b->len + len > (8u << 20)) return 0; /* a status table is never this large */
  char tmp[4097];
  for (size_t off = 0; off < len; off += 4096) {
    size_t k = len - off < 4096 ? len - off : 4096;
    memcpy(tmp, data + off, k);
    tmp[k] = '\0';
    od_sqlbuf_add(b, tmp);
  }
  return b->oom ? 0 : len;
}

int od_cli_status(const char *config_path, const char *url) {
  char base[512];
  if (url) {
    snprintf(base, sizeof base, "%s", url);
  } else {
    od_config *cfg;
    od_error err;
    od_error_clear(&err);
    if (od_config_load(config_path, &cfg, &err)) {
      fprintf(stderr, "odsync: %s\n", err.msg);
      return 2;
    }
    if (!cfg->admin.enabled) {
      fprintf(stderr, "odsync: %s has no admin section; add admin: { listen: \"127.0.0.1:7070\" } and restart "
              "odsync run, or pass --url\n", config_path);
      od_config_free(cfg);
      return 2;
    }
    /* As written in admin.listen (a TLS certificate names "localhost", not 127.0.0.1). */
    snprintf(base, sizeof base, "%s://%s", cfg->admin.tls_cert ? "https" : "http", cfg->admin.listen);
    od_config_free(cfg);
  }
  size_t bl = strlen(base);
  while (bl && base[bl - 1] == '/') base[--bl] = '\0';
  char full[600];
  snprintf(full, sizeof full, "%s/status?format=text", base);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    fputs("odsync: cannot initialise libcurl\n", stderr);
    return 1;
  }
  CURL *c = curl_easy_init();
  od_sqlbuf body = {0};
  char cerr[CURL_ERROR_SIZE] = "";
  long code = 0;
  CURLcode rc = CURLE_FAILED_INIT;
  if (c) {
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* An admin API with authentication: the token from the environment (never from argv, where
     * other users could read it); a private CA for HTTPS. */
    const char *token = getenv("ODSYNC_ADMIN_TOKEN"), *ca = getenv("ODSYNC_ADMIN_CACERT");
    struct curl_slist *hdr = NULL;
    char auth[8300];
    if (token && *token && strlen(token) < 8192) {
      snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
      hdr = curl_slist_append(NULL, auth);
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    }
    if (ca && *ca) curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    rc = curl_easy_perform(c);
    curl_slist_free_all(hdr);
    OPENSSL_cleanse(auth, sizeof auth);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
  }
  curl_global_cleanup();
  int exit_code = 0;
  if (rc != CURLE_OK) {
    fprintf(stderr, "odsync: cannot reach the admin server at %s: %s (is `odsync run` going with this admin.listen?)\n",
            base, cerr[0] ? cerr : curl_easy_strerror(rc));
    exit_code = 1;
  } else if (code == 401 || code == 403) {
    fprintf(stderr, "odsync: %s answered HTTP %ld: %s(set ODSYNC_ADMIN_TOKEN to a token with the viewer role)\n", full,
            code, body.p ? body.p : "\n");
    exit_code = 1;
  } else if (code != 200) {
    fprintf(stderr, "odsync: %s answered HTTP %ld: %s", full, code, body.p ? body.p : "\n");
    exit_code = 1;
  } else {
    fputs(body.p ? body.p : "", stdout);
  }
  od_sqlbuf_free(&body);
  return exit_code;
}
