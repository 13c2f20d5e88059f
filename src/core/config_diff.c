/* core/config_diff.c — see config_diff.h. Each part is fed to SHA-256 as tagged, length-prefixed
 * fields, so no two different configurations serialize alike ("ab"+"c" differs from "a"+"bc"). */
#include "core/config_diff.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct dg {
  EVP_MD_CTX *md;
  bool ok;
} dg;

static void put(dg *d, const void *p, size_t n) {
  uint64_t len = n;
  if (d->ok && (!EVP_DigestUpdate(d->md, &len, sizeof len) || (n && !EVP_DigestUpdate(d->md, p, n)))) d->ok = false;
}
static void put_str(dg *d, const char *s) {
  if (!s) {
    put(d, "\xff", 1); /* NULL differs from "" */
    return;
  }
  put(d, s, strlen(s));
}
static void put_num(dg *d, double v) { put(d, &v, sizeof v); }

static void put_section(dg *d, const od_config_section *s) {
  put_str(d, s->type);
  put_num(d, s->nentries);
  for (int i = 0; i < s->nentries; i++) {
    const od_config_entry *e = &s->entries[i];
    put_str(d, e->key);
    put_str(d, e->value);
    put_num(d, e->list ? e->nlist : -1);
    for (int j = 0; e->list && j < e->nlist; j++) put_str(d, e->list[j]);
  }
}

static void put_transforms(dg *d, const od_transform_list *t) {
  put_num(d, t->n);
  for (int i = 0; i < t->n; i++) put_section(d, &t->items[i]);
}

static void put_part(dg *d, const od_config *root, const od_pipeline_config *p, int part) {
  switch (part) {
    case OD_CFGPART_SOURCE:
      put_section(d, &p->source);
      break;
    case OD_CFGPART_SINKS:
      put_num(d, p->nsinks);
      for (int i = 0; i < p->nsinks; i++) {
        const od_sink_config *s = &p->sinks[i];
        put_str(d, s->name);
        put_section(d, &s->section);
        put_transforms(d, &s->transforms);
        put_num(d, s->spool.disabled);
        put_num(d, (double)s->spool.max_bytes);
        put_str(d, s->spool.dir);
        put_num(d, s->spool.compression);
      }
      break;
    case OD_CFGPART_TRANSFORMS:
      put_transforms(d, &p->transforms);
      break;
    case OD_CFGPART_OPTIONS: {
      const double nums[] = {(double)p->reconnect_max_ms, p->batch.max_rows, (double)p->batch.max_bytes,
                             p->batch.max_delay_ms, p->batch.adaptive, p->batch.min_rows,
                             p->batch.target_latency_ms, (double)p->queue.max_rows, (double)p->queue.max_bytes,
                             p->schema_changes, p->consistency, p->apply_workers, (double)p->apply_parallel_min_rows,
                             p->alerts.lag_seconds,
                             p->alerts.latency_p95_seconds, p->alerts.errors_per_minute, p->alerts.anomalies,
                             p->on_poison, p->poison_attempts, p->breaker.failures, p->breaker.error_rate,
                             p->breaker.min_attempts, (double)p->breaker.window_ms, (double)p->breaker.cooldown_ms,
                             p->pii.detect, p->pii.sample};
      for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) put_num(d, nums[i]);
      put_str(d, p->alerts.webhook);
      break;
    }
    case OD_CFGPART_ROOT:
      put_str(d, root->state_dir);
      put_num(d, root->encryption.nkeys);
      for (int i = 0; i < root->encryption.nkeys; i++) {
        put_str(d, root->encryption.keys[i].id);
        put_str(d, root->encryption.keys[i].key);
      }
      break;
    default:
      break;
  }
}

static bool digest(const od_config *root, const od_pipeline_config *p, int part, unsigned char out[32]) {
  dg d = {.md = EVP_MD_CTX_new(), .ok = true};
  unsigned int n = 0;
  d.ok = d.md && EVP_DigestInit_ex(d.md, EVP_sha256(), NULL);
  if (d.ok) put_part(&d, root, p, part);
  if (d.ok) d.ok = EVP_DigestFinal_ex(d.md, out, &n) && n == 32;
  EVP_MD_CTX_free(d.md);
  return d.ok;
}

int od_config_pipeline_diff(const od_config *ra, const od_pipeline_config *a, const od_config *rb,
                            const od_pipeline_config *b) {
  int parts = 0;
  for (int part = OD_CFGPART_SOURCE; part <= OD_CFGPART_ROOT; part <<= 1) {
    unsigned char da[32], db[32];
    /* A digest that cannot be computed counts as a change: restarting is the safe side. */
    if (!digest(ra, a, part, da) || !digest(rb, b, part, db) || CRYPTO_memcmp(da, db, 32) != 0) parts |= part;
    OPENSSL_cleanse(da, sizeof da);
    OPENSSL_cleanse(db, sizeof db);
  }
  return parts;
}

void od_config_parts_text(int parts, char *out, size_t size) {
  static const char *const names[] = {"source", "sinks", "transforms", "options", "state_dir/encryption"};
  size_t len = 0;
  if (size) out[0] = '\0';
  for (int i = 0; i < 5; i++)
    if ((parts & (1 << i)) && len < size) {
      int w = snprintf(out + len, size - len, "%s%s", len ? ", " : "", names[i]);
      if (w > 0) len += (size_t)w;
    }
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

bool od_config_admin_auth_changed(const od_admin_config *a, const od_admin_config *b, bool *listen_changed) {
  *listen_changed = a->enabled != b->enabled || !str_eq(a->host, b->host) || a->port != b->port ||
                    !str_eq(a->tls_cert, b->tls_cert) || !str_eq(a->tls_key, b->tls_key);
  if (a->ntokens != b->ntokens) return true;
  for (int i = 0; i < a->ntokens; i++) {
    const char *ta = a->tokens[i].token, *tb = b->tokens[i].token;
    size_t la = ta ? strlen(ta) : 0, lb = tb ? strlen(tb) : 0;
    if (la != lb || a->tokens[i].role != b->tokens[i].role || (la && CRYPTO_memcmp(ta, tb, la) != 0)) return true;
  }
  const od_admin_jwt_config *ja = &a->jwt, *jb = &b->jwt;
  size_t sa = ja->secret ? strlen(ja->secret) : 0, sb = jb->secret ? strlen(jb->secret) : 0;
  return ja->enabled != jb->enabled || ja->rs256 != jb->rs256 || sa != sb ||
         (sa && CRYPTO_memcmp(ja->secret, jb->secret, sa) != 0) || !str_eq(ja->public_key, jb->public_key) ||
         !str_eq(ja->audience, jb->audience) || !str_eq(ja->issuer, jb->issuer) ||
         !str_eq(ja->role_claim, jb->role_claim) || ja->leeway_s != jb->leeway_s;
}

const od_pipeline_config *od_config_pipeline_named(const od_config *cfg, const char *name) {
  for (int i = 0; i < cfg->npipelines; i++)
    if (!strcmp(cfg->pipelines[i].name, name)) return &cfg->pipelines[i];
  return NULL;
}
