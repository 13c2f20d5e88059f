/* sources/mysql/binlog_types.c — how a MariaDB column is described to the rest of odsync.
 *
 * Owns: the mapping of each MariaDB column type onto the PostgreSQL type whose text input reads
 * the value binlog_value.c produces (OID, typmod and SQL spelling; docs/TYPES.md, "MariaDB"), and
 * the character set of a collation id or name.
 * Never touches: row bytes, connections.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sources/mysql/binlog.h"

#include "common/pg_types.h"


int my_charset_of_collation(unsigned id) {
  /* MariaDB's NO PAD variant of collation n is 1024 + n. */
  if (id >= 1024 && id < 2048) return my_charset_of_collation(id - 1024);
  switch (id) {
    case 63: return MY_CS_BINARY;
    case 5: case 8: case 15: case 31: case 47: case 48: case 49: case 94: return MY_CS_LATIN1;
    case 11: case 65: return MY_CS_ASCII;
    case 33: case 45: case 46: case 76: case 83: return MY_CS_UTF8;
    default:
      /* utf8mb3 and utf8mb4 UCA collations (192-247, 576-671), MariaDB's uca1400 ones (2048+). */
      if ((id >= 192 && id <= 247) || (id >= 576 && id <= 671) || (id >= 2048 && id < 4096)) return MY_CS_UTF8;
      return MY_CS_OTHER;
  }
}

int my_charset_of_name(const char *name) {
  if (!name || !*name) return MY_CS_UNKNOWN;
  if (!strcasecmp(name, "binary")) return MY_CS_BINARY;
  if (!strcasecmp(name, "latin1")) return MY_CS_LATIN1;
  if (!strcasecmp(name, "ascii")) return MY_CS_ASCII;
  if (!strcasecmp(name, "utf8mb4") || !strcasecmp(name, "utf8mb3") || !strcasecmp(name, "utf8"))
    return MY_CS_UTF8;
  return MY_CS_OTHER;
}

static void set(od_column *o, uint32_t oid, int32_t typmod, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#include <stdarg.h>
static void set(od_column *o, uint32_t oid, int32_t typmod, const char *fmt, ...) {
  o->type_oid = oid;
  o->typmod = typmod;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->type_name, sizeof o->type_name, fmt, ap);
  va_end(ap);
}

void my_column_describe(const my_column *c, od_column *o) {
  bool u = c->is_unsigned;
  switch (c->type) {
    case MY_T_TINY: set(o, OD_PGT_INT2, -1, "smallint"); break;
    case MY_T_SHORT: u ? set(o, OD_PGT_INT4, -1, "integer") : set(o, OD_PGT_INT2, -1, "smallint"); break;
    case MY_T_INT24: set(o, OD_PGT_INT4, -1, "integer"); break;
    case MY_T_LONG: u ? set(o, OD_PGT_INT8, -1, "bigint") : set(o, OD_PGT_INT4, -1, "integer"); break;
    case MY_T_LONGLONG:
      u ? set(o, OD_PGT_NUMERIC, (20 << 16) + 4, "numeric(20,0)") : set(o, OD_PGT_INT8, -1, "bigint");
      break;
    case MY_T_YEAR: set(o, OD_PGT_INT2, -1, "smallint"); break;
    case MY_T_FLOAT: set(o, OD_PGT_FLOAT4, -1, "real"); break;
    case MY_T_DOUBLE: set(o, OD_PGT_FLOAT8, -1, "double precision"); break;
    case MY_T_NEWDECIMAL:
      set(o, OD_PGT_NUMERIC, (c->precision << 16 | c->scale) + 4, "numeric(%u,%u)", c->precision, c->scale);
      break;
    case MY_T_DATE: case MY_T_NEWDATE: set(o, OD_PGT_DATE, -1, "date"); break;
    case MY_T_TIME: case MY_T_TIME2: set(o, OD_PGT_INTERVAL, -1, "interval"); break;
    case MY_T_DATETIME: case MY_T_DATETIME2: {
      unsigned fsp = c->type == MY_T_DATETIME2 ? c->length : 0;
      set(o, OD_PGT_TIMESTAMP, (int32_t)fsp, "timestamp(%u) without time zone", fsp);
      break;
    }
    case MY_T_TIMESTAMP: case MY_T_TIMESTAMP2: {
      unsigned fsp = c->type == MY_T_TIMESTAMP2 ? c->length : 0;
      set(o, OD_PGT_TIMESTAMPTZ, (int32_t)fsp, "timestamp(%u) with time zone", fsp);
      break;
    }
    case MY_T_BIT: set(o, OD_PGT_BIT, (int32_t)c->length, "bit(%u)", c->length); break;
    case MY_T_GEOMETRY: set(o, OD_PGT_BYTEA, -1, "bytea"); break;
    case MY_T_STRING: case MY_T_VARCHAR: case MY_T_VAR_STRING: case MY_T_BLOB: case MY_T_TINY_BLOB:
    case MY_T_MEDIUM_BLOB: case MY_T_LONG_BLOB: case MY_T_ENUM: case MY_T_SET:
      if (c->charset == MY_CS_BINARY && c->real_type != MY_T_ENUM && c->real_type != MY_T_SET)
        set(o, OD_PGT_BYTEA, -1, "bytea");
      else
        set(o, OD_PGT_TEXT, -1, "text");
      break;
    default: set(o, OD_PGT_TEXT, -1, "text"); break;
  }
}
