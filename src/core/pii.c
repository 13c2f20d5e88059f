/* pii.c — see pii.h. Patterns are anchored (the whole trimmed value must match); checksums
 * (Luhn, mod 97) and ranges are checked in C after the pattern matched. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/pii.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_EMAIL, P_PHONE, P_NINO, P_CARD, P_IBAN, P_SSN, P_IPV4, P_IPV6, P_DATE, P_NAME_NAME, P_NAME_ADDR, P_NAME_BIRTH,
       P_NAME_BARE, P_HINT_EMAIL, P_HINT_PHONE, P_HINT_CARD, P_HINT_IBAN, P_HINT_NINO, P_HINT_SSN, P_HINT_IP, NPATTERNS };

static const char *const PATTERNS[NPATTERNS] = {
    [P_EMAIL] = "^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\\.[A-Za-z]{2,24}$",
    /* +CC and separators, or (area) code; 7..15 digits counted in C */
    [P_PHONE] = "^(?:\\+[0-9]{1,3}[ .-]?)?(?:\\([0-9]{1,4}\\)[ .-]?)?[0-9]{1,5}(?:[ .-][0-9]{1,5}){1,5}$|^\\+[0-9]{7,15}$"
                "|^\\+[0-9]{1,3}(?:[ .-][0-9]{1,8}){1,4}$", /* international: longer subscriber groups */
    [P_CARD] = "^[0-9]{4}(?:[ -]?[0-9]{2,7}){2,5}$|^[0-9]{13,19}$",
    [P_IBAN] = "^[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{1,4}){3,8}$",
    /* UK National Insurance number: two letters (not D, F, I, Q, U, V; second not O), 6 digits, A-D */
    [P_NINO] = "^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]$",
    [P_SSN] = "^(?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}$",
    [P_IPV4] = "^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$",
    [P_IPV6] = "^(?=(?:[^:]*:){3}|.*::)(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|[0-9A-Fa-f]{1,4})$|^(?:[0-9A-Fa-f]{1,4}:){0,6}:(?::?[0-9A-Fa-f]{1,4}){1,6}$",
    [P_DATE] = "^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[ T].*)?$|^[0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4}$",
    [P_NAME_NAME] = "(?i)^(?:first|last|middle|given|family|full|maiden|customer|contact|person|display|legal)_?name$|^(?i)(?:surname|forename|firstname|lastname|fullname)$",
    [P_NAME_ADDR] = "(?i)(?:^|_)(?:address|addr|street|street_?address|address_?line_?[0-9]?|city|zip|zip_?code|postal_?code|postcode|home_?address)(?:_|$)",
    [P_NAME_BIRTH] = "(?i)^(?:dob|birth_?date|date_?of_?birth|birthday|born_?on)$",
    [P_NAME_BARE] = "(?i)^name$",
    [P_HINT_EMAIL] = "(?i)e_?mail",
    [P_HINT_PHONE] = "(?i)phone|mobile|(?:^|_)tel(?:_|$)|fax|msisdn",
    [P_HINT_CARD] = "(?i)card|(?:^|_)cc(?:_|$)|pan(?:_|$)",
    [P_HINT_IBAN] = "(?i)iban|account",
    [P_HINT_NINO] = "(?i)nino|national_?insurance|ni_?number",
    [P_HINT_SSN] = "(?i)ssn|social|national_?id|tax_?id",
    [P_HINT_IP] = "(?i)(?:^|_)ip(?:_|$)|ip_?addr|remote_?addr|client_?ip",
};

struct od_pii_detector {
  pcre2_code *code[NPATTERNS];
  pcre2_match_data *md;
};

static const char *const KIND_NAMES[OD_PII_NKINDS] = {"none", "email", "phone", "card", "iban", "ssn", "nino", "ip",
                                                      "name", "address", "birthdate"};

const char *od_pii_kind_name(od_pii_kind k) { return k >= 0 && k < OD_PII_NKINDS ? KIND_NAMES[k] : "?"; }

int od_pii_detector_new(od_pii_detector **out, od_error *err) {
  od_pii_detector *d = calloc(1, sizeof *d);
  if (!d) return OD_FAIL(err, OD_ENOMEM, "pii: out of memory");
  for (int i = 0; i < NPATTERNS; i++) {
    int ec;
    PCRE2_SIZE off;
    d->code[i] = pcre2_compile((PCRE2_SPTR)PATTERNS[i], PCRE2_ZERO_TERMINATED, 0, &ec,
                               &off, NULL);
    if (!d->code[i]) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(ec, msg, sizeof msg);
      od_pii_detector_free(d);
      return OD_FAIL(err, OD_EINVAL, "pii: pattern %d does not compile at %zu: %s", i, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(d->code[i], PCRE2_JIT_COMPLETE); /* no JIT on this platform: the interpreter matches */
  }
  if (!(d->md = pcre2_match_data_create(4, NULL))) {
    od_pii_detector_free(d);
    return OD_FAIL(err, OD_ENOMEM, "pii: out of memory");
  }
  *out = d;
  return OD_OK;
}

void od_pii_detector_free(od_pii_detector *d) {
  if (!d) return;
  for (int i = 0; i < NPATTERNS; i++) pcre2_code_free(d->code[i]);
  pcre2_match_data_free(d->md);
  free(d);
}

static bool match(od_pii_detector *d, int p, const char *v, size_t len) {
  /* values are not checked as UTF-8 (NO_UTF_CHECK at match time would be unsafe on bad input) */
  return pcre2_match(d->code[p], (PCRE2_SPTR)v, len, 0, 0, d->md, NULL) >= 0;
}

static int digits(const char *v, size_t len, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (isdigit((unsigned char)v[i])) {
      if (n + 1 >= cap) return -1;
      out[n++] = v[i];
    }
  out[n] = 0;
  return (int)n;
}

static bool luhn(const char *d, int n) {
  int sum = 0;
  for (int i = 0; i < n; i++) {
    int x = d[n - 1 - i] - '0';
    if (i % 2) {
      x *= 2;
      if (x > 9) x -= 9;
    }
    sum += x;
  }
  return sum % 10 == 0;
}

static bool iban_ok(const char *v, size_t len) {
  char s[64];
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (v[i] != ' ') {
      if (n + 1 >= sizeof s) return false;
      s[n++] = v[i];
    }
  if (n < 15 || n > 34) return false;
  /* move the first four characters to the end; letters become 10..35; the number mod 97 is 1 */
  unsigned rem = 0;
  for (size_t k = 0; k < n; k++) {
    char c = s[(k + 4) % n];
    if (isdigit((unsigned char)c)) {
      rem = (rem * 10 + (unsigned)(c - '0')) % 97;
    } else if (c >= 'A' && c <= 'Z') {
      rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
    } else {
      return false;
    }
  }
  return rem == 1;
}

od_pii_kind od_pii_value(od_pii_detector *d, const char *v, size_t len) {
  while (len && isspace((unsigned char)*v)) v++, len--;
  while (len && isspace((unsigned char)v[len - 1])) len--;
  if (len < 3 || len > 254) return OD_PII_NONE;
  char dg[40];
  if (memchr(v, '@', len)) return match(d, P_EMAIL, v, len) ? OD_PII_EMAIL : OD_PII_NONE;
  if (match(d, P_SSN, v, len)) return OD_PII_SSN;
  if (len == 11 && v[3] == '-' && v[6] == '-') return OD_PII_NONE; /* SSN-shaped, outside the issued ranges */
  if (match(d, P_IPV4, v, len) || (memchr(v, ':', len) && match(d, P_IPV6, v, len))) return OD_PII_IP;
  if (isalpha((unsigned char)v[0])) {
    if (match(d, P_NINO, v, len)) return OD_PII_NINO;
    return match(d, P_IBAN, v, len) && iban_ok(v, len) ? OD_PII_IBAN : OD_PII_NONE;
  }
  if (match(d, P_DATE, v, len)) return OD_PII_NONE;
  int nd = digits(v, len, dg, sizeof dg);
  if (nd >= 13 && nd <= 19 && match(d, P_CARD, v, len) && luhn(dg, nd)) return OD_PII_CARD;
  if (nd >= 7 && nd <= 15 && match(d, P_PHONE, v, len)) return OD_PII_PHONE;
  return OD_PII_NONE;
}

od_pii_kind od_pii_column_name(od_pii_detector *d, const char *column, double *confidence) {
  size_t len = strlen(column);
  static const struct { int p; od_pii_kind k; double c; } NAMES[] = {
      {P_NAME_NAME, OD_PII_NAME, 0.7},   {P_NAME_ADDR, OD_PII_ADDRESS, 0.7}, {P_NAME_BIRTH, OD_PII_BIRTHDATE, 0.7},
      {P_NAME_BARE, OD_PII_NAME, 0.4},   {P_HINT_EMAIL, OD_PII_EMAIL, 0.3},  {P_HINT_PHONE, OD_PII_PHONE, 0.3},
      {P_HINT_NINO, OD_PII_NINO, 0.3},   {P_HINT_SSN, OD_PII_SSN, 0.3},     {P_HINT_IBAN, OD_PII_IBAN, 0.2},    {P_HINT_CARD, OD_PII_CARD, 0.2},
      {P_HINT_IP, OD_PII_IP, 0.2},
  };
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
    if (match(d, NAMES[i].p, column, len)) {
      *confidence = NAMES[i].c;
      return NAMES[i].k;
    }
  *confidence = 0;
  return OD_PII_NONE;
}

od_pii_kind od_pii_judge(od_pii_detector *d, const char *column, const od_pii_tally *t, uint32_t min_hits,
                         double *confidence) {
  double name_conf;
  od_pii_kind hint = od_pii_column_name(d, column, &name_conf);
  od_pii_kind best = OD_PII_NONE;
  uint32_t most = 0;
  for (int k = OD_PII_EMAIL; k <= OD_PII_IP; k++)
    if (t->hits[k] > most) {
      most = t->hits[k];
      best = (od_pii_kind)k;
    }
  if (best != OD_PII_NONE && t->values && most >= min_hits && (double)most / t->values >= 0.6) {
    double c = (double)most / t->values;
    if (hint == best) c += 0.1;
    if (t->values < 10) c *= 0.8;
    *confidence = c > 0.99 ? 0.99 : c;
    return best;
  }
  if (hint == OD_PII_NAME || hint == OD_PII_ADDRESS || hint == OD_PII_BIRTHDATE) {
    *confidence = name_conf;
    return hint;
  }
  *confidence = 0;
  return OD_PII_NONE;
}
