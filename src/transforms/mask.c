/* mask.c — the mask transform: selected columns reach the sink masked.
 *
 *   transforms:
 *     - { type: mask, columns: [ssn], style: fixed, with: "XXX" }       # every value becomes XXX
 *     - { type: mask, columns: [iban], style: keep_last, keep: 4 }     # ******************1234
 *     - { type: mask, columns: [email], style: email }                 # j*******@example.com
 *     - { type: mask, columns: [phone], style: phone, keep: 2 }        # +* (***) ***-**67
 *     - { type: mask, columns: [card], style: card }                   # **** **** **** 1111
 *
 * style: fixed (default; `with`, default "****"), keep_last (every character but the last `keep`,
 * default 4, becomes `char`), email (the local part's first character and the whole domain stay; a
 * value without '@' is masked whole), phone and card (digits become `char` except the last `keep`,
 * default 4; every other character stays, so the format is preserved). Characters are UTF-8 code
 * points. A masked column becomes text. A key column cannot be masked (row identity): the error
 * names table and column. Owns: its options. Never touches: the sink, unselected columns.
 */
#include <stdlib.h>
#include <string.h>

#include "transforms/rewrite.h"

enum style { FIXED, KEEP_LAST, EMAIL, PHONE, CARD };

typedef struct mask {
  tx_rewrite r;
  enum style style;
  const char *with;
  size_t with_len;
  long keep;
  char ch;
} mask;

extern const od_transform_ops od_transform_mask;
static const char *const keys[] = {"style", "with", "keep", "char", NULL};

static int mk_open(tx_rewrite *r, const od_config_section *cfg, od_error *err) {
  mask *m = (mask *)r;
  const char *style, *ch;
  int rc;
  if ((rc = od_config_string(cfg, "style", "fixed", &style, err)) ||
      (rc = od_config_string(cfg, "with", "****", &m->with, err)) ||
      (rc = od_config_string(cfg, "char", "*", &ch, err)) ||
      (rc = od_config_int(cfg, "keep", 4, 0, 1000, &m->keep, err)))
    return rc;
  static const char *const names[] = {"fixed", "keep_last", "email", "phone", "card"};
  int s = -1;
  for (int i = 0; i < 5; i++)
    if (!strcmp(style, names[i])) s = i;
  const od_config_entry *e = od_config_find(cfg, "style");
  if (s < 0)
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.style: '%s' is not a mask style (fixed, keep_last, email, phone, card)",
                   cfg->file, e->line, e->col, cfg->path, style);
  m->style = (enum style)s;
  if (strlen(ch) != 1 || (unsigned char)ch[0] < 0x20 || (unsigned char)ch[0] > 0x7e) {
    e = od_config_find(cfg, "char");
    return OD_FAIL(err, OD_ECONFIG, "%s:%d:%d: %s.char: must be one printable ASCII character", cfg->file, e->line,
                   e->col, cfg->path);
  }
  m->ch = ch[0];
  m->with_len = strlen(m->with);
  return OD_OK;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_cont(char c) { return ((unsigned char)c & 0xC0) == 0x80; }
static bool is_ascii(const char *v, size_t n) {
  unsigned char any = 0;
  for (size_t i = 0; i < n; i++) any |= (unsigned char)v[i];
  return any < 0x80;
}

static int mk_value(tx_rewrite *r, const od_column *c, const od_value *in, od_value *out, od_scratch *s, od_error *err) {
  (void)c;
  mask *m = (mask *)r;
  const char *v = in->data;
  size_t n = in->len;
  if (m->style == FIXED) {
    *out = (od_value){.data = m->with, .len = (uint32_t)m->with_len, .kind = OD_VALUE_TEXT};
    return OD_OK;
  }
  char *o = s->alloc(s, n + 1); /* never longer than the input: a code point becomes one char */
  if (!o) return OD_FAIL(err, OD_ENOMEM, "out of memory");
  size_t k = 0;
  if (m->style == KEEP_LAST && is_ascii(v, n)) { /* one byte per character: the same as below, in two copies */
    size_t keep = (size_t)m->keep < n ? (size_t)m->keep : n;
    memset(o, m->ch, n - keep);
    memcpy(o + n - keep, v + n - keep, keep);
    k = n;
  } else if (m->style == KEEP_LAST || m->style == EMAIL) {
    /* Code point by code point; continuation bytes follow their lead byte's fate. */
    const char *at = m->style == EMAIL ? memchr(v, '@', n) : NULL;
    size_t end = at ? (size_t)(at - v) : n, total = tx_utf8_len(v, end), cp = 0;
    size_t keep = m->style == EMAIL ? 0 : (size_t)m->keep < total ? (size_t)m->keep : total;
    bool cur = false;
    for (size_t i = 0; i < end; i++) {
      if (is_cont(v[i])) {
        if (cur) o[k++] = v[i];
        continue;
      }
      cp++;
      cur = m->style == EMAIL ? cp == 1 && at : cp > total - keep;
      o[k++] = cur ? v[i] : m->ch;
    }
    for (size_t i = end; i < n; i++) o[k++] = v[i]; /* an email's '@' and domain */
  } else { /* PHONE, CARD: digits masked but the last `keep` */
    size_t digits = 0, seen = 0;
    for (size_t i = 0; i < n; i++) digits += is_digit(v[i]);
    for (size_t i = 0; i < n; i++) {
      if (!is_digit(v[i])) {
        o[k++] = v[i];
        continue;
      }
      seen++;
      o[k++] = seen + (size_t)m->keep > digits ? v[i] : m->ch;
    }
  }
  o[k] = '\0';
  *out = (od_value){.data = o, .len = (uint32_t)k, .kind = OD_VALUE_TEXT};
  return OD_OK;
}

static const tx_rewrite_kind kind = {
    .ops = &od_transform_mask,
    .size = sizeof(mask),
    .keys = keys,
    .key_allowed = false,
    .to_text = true,
    .open = mk_open,
    .value = mk_value,
};

static int open_mask(const od_config_section *cfg, od_transform **out, od_error *err) {
  return tx_rewrite_open(cfg, &kind, out, err);
}

const od_transform_ops od_transform_mask = {
    .type = "mask",
    .keeps_values = false,
    .open = open_mask,
    .relation = tx_rewrite_relation,
    .change = tx_rewrite_change,
    .close = tx_rewrite_close,
};
