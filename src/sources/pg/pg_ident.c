/* pg_ident.c — see pg_ident.h. Owns nothing; never touches libpq, the config or the server. */
#include "sources/pg/pg_ident.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool ident_start(unsigned char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
static bool ident_cont(unsigned char c) { return ident_start(c) || (c >= '0' && c <= '9') || c == '$'; }

/* One identifier at text[*pos] into out (OD_PG_IDENT_MAX + 1 bytes). */
static int part(const char *text, size_t *pos, char *out, char *why, size_t why_size) {
  size_t p = *pos, n = 0;
  if (text[p] == '"') {
    p++;
    for (;;) {
      if (!text[p]) {
        snprintf(why, why_size, "a quoted identifier is not closed (a missing '\"')");
        return -1;
      }
      if (text[p] == '"') {
        if (text[p + 1] != '"') break;
        p++; /* "" is one quote */
      }
      if (n == OD_PG_IDENT_MAX) {
        snprintf(why, why_size, "an identifier is longer than %d bytes", OD_PG_IDENT_MAX);
        return -1;
      }
      out[n++] = text[p++];
    }
    p++;
    if (n == 0) {
      snprintf(why, why_size, "an empty quoted identifier (\"\")");
      *pos = p - 2;
      return -1;
    }
  } else {
    if (!ident_start((unsigned char)text[p])) {
      if (text[p])
        snprintf(why, why_size, "unexpected '%c': a name starts with a letter or _, or is written in double "
                 "quotes (\"Sales Dept\")", text[p]);
      else
        snprintf(why, why_size, "a name is missing");
      *pos = p;
      return -1;
    }
    while (ident_cont((unsigned char)text[p])) {
      if (n == OD_PG_IDENT_MAX) {
        snprintf(why, why_size, "an identifier is longer than %d bytes", OD_PG_IDENT_MAX);
        *pos = p;
        return -1;
      }
      char c = text[p++];
      out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
  }
  out[n] = '\0';
  *pos = p;
  return 0;
}

static size_t blanks(const char *text, size_t p) {
  while (text[p] == ' ' || text[p] == '\t') p++;
  return p;
}

int od_pg_parse_qname(const char *text, od_pg_qname *out, char *why, size_t why_size, size_t *at) {
  size_t p = blanks(text, 0);
  char first[OD_PG_IDENT_MAX + 1], second[OD_PG_IDENT_MAX + 1];
  *at = p;
  if (part(text, &p, first, why, why_size)) {
    *at = p;
    return -1;
  }
  p = blanks(text, p);
  if (text[p] == '.') {
    p = blanks(text, p + 1);
    if (part(text, &p, second, why, why_size)) {
      *at = p;
      return -1;
    }
    p = blanks(text, p);
    snprintf(out->schema, sizeof out->schema, "%s", first);
    snprintf(out->name, sizeof out->name, "%s", second);
  } else {
    snprintf(out->schema, sizeof out->schema, "public");
    snprintf(out->name, sizeof out->name, "%s", first);
  }
  if (text[p]) {
    *at = p;
    snprintf(why, why_size, "unexpected '%c' after the name (a name with blanks, dots or capitals to keep is "
             "written in double quotes: '\"Sales Dept\".\"Orders\"')", text[p]);
    return -1;
  }
  return 0;
}
