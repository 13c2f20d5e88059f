/* pg_ident.h — `source.tables` entries parsed the way PostgreSQL parses a (qualified) table name.
 * Pure: no I/O, no libpq. */
#ifndef ODSYNC_PG_IDENT_H
#define ODSYNC_PG_IDENT_H

#include <stddef.h>

/* PostgreSQL's NAMEDATALEN - 1: the longest identifier, in bytes. */
#define OD_PG_IDENT_MAX 63

typedef struct od_pg_qname {
  char schema[OD_PG_IDENT_MAX + 1]; /* "public" when the entry names no schema */
  char name[OD_PG_IDENT_MAX + 1];
} od_pg_qname;

/* Parses `text` as [schema.]table: each part either "quoted" (case kept, "" for a quote) or
 * unquoted (a letter or _ first, then letters, digits, _ or $; ASCII letters folded to lower
 * case, bytes >= 0x80 kept), blanks allowed around the dot. Returns 0, or -1 with a reason in
 * why (and *at, the 0-based byte offset in text where it went wrong). */
int od_pg_parse_qname(const char *text, od_pg_qname *out, char *why, size_t why_size, size_t *at);

#endif
