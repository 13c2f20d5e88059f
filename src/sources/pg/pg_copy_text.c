/* pg_copy_text.c — splitting a row of PostgreSQL's COPY text format (see pg_copy_text.h).
 *
 * The format (PostgreSQL docs, "COPY", File Formats / Text Format): fields separated by the
 * delimiter (tab), rows ended by a newline, NULL written as \N, and inside a field a backslash
 * escapes the next character: \b \f \n \r \t \v stand for those control characters, \ followed by
 * one to three octal digits or by x and one or two hex digits for that byte, and a backslash
 * followed by any other character for that character (\\ is a backslash). COPY TO only writes
 * \b \f \n \r \t \v \\ (other bytes, control characters included, go out as they are); the other
 * forms are accepted as COPY FROM accepts them. Whether a field is NULL is decided on its raw text
 * (exactly \N), so the text "\N" (written \\N) stays text.
 * Owns nothing; never touches connections or encodings (values are bytes in the client encoding).
 */
#include "sources/pg/pg_copy_text.h"

#include <stdbool.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool is_octal(char c) { return c >= '0' && c <= '7'; }

int od_pg_copy_split(char *row, size_t len, od_value *out, int max) {
  if (len && row[len - 1] == '\n') len--;
  if (len && row[len - 1] == '\r') len--; /* a data \r is always escaped: this one ends the row */
  if (max == 0) return len == 0 ? 0 : 1;
  int n = 0;
  size_t i = 0;
  for (;;) {
    if (n == max) return max + 1;
    char *start = row + i, *w = start;
    if (len - i >= 2 && row[i] == '\\' && row[i + 1] == 'N' && (len - i == 2 || row[i + 2] == '\t')) {
      out[n++] = (od_value){.data = NULL, .len = 0, .kind = OD_VALUE_NULL};
      i += 2;
    } else {
      /* The plain part before the first tab or backslash needs no copying (bytes in place). */
      while (i < len && row[i] != '\t' && row[i] != '\\') i++;
      w = row + i;
      while (i < len && row[i] != '\t') {
        char c = row[i++];
        if (c == '\\') {
          if (i == len) return -1;
          c = row[i++];
          switch (c) {
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'v': c = '\v'; break;
            case 'x':
              if (i < len && hexval(row[i]) >= 0) {
                int v = hexval(row[i++]);
                if (i < len && hexval(row[i]) >= 0) v = v << 4 | hexval(row[i++]);
                c = (char)v;
              }
              break;
            default:
              if (is_octal(c)) {
                int v = c - '0';
                for (int k = 0; k < 2 && i < len && is_octal(row[i]); k++) v = v << 3 | (row[i++] - '0');
                c = (char)(v & 0377);
              }
              break;
          }
        }
        *w++ = c; /* never ahead of the reading position: unescaping only shrinks */
      }
      /* w <= row + i, and row[i] is the tab, the newline or row[len]: room for the NUL. */
      *w = '\0';
      out[n++] = (od_value){.data = start, .len = (uint32_t)(w - start), .kind = OD_VALUE_TEXT};
    }
    if (i >= len) return n;
    i++; /* the tab: another field follows, maybe empty */
  }
}
