/* pg_types.h — PostgreSQL's built-in type OIDs (pg_type.dat), the one place odsync names them.
 * Sources and sinks that speak PostgreSQL types use these names; user-defined types start at
 * OD_PGT_FIRST_USER_OID. Owns nothing. */
#ifndef ODSYNC_COMMON_PG_TYPES_H
#define ODSYNC_COMMON_PG_TYPES_H

enum od_pg_type {
  OD_PGT_BOOL = 16,
  OD_PGT_BYTEA = 17,
  OD_PGT_INT8 = 20,
  OD_PGT_INT2 = 21,
  OD_PGT_INT4 = 23,
  OD_PGT_REGPROC = 24,
  OD_PGT_TEXT = 25,
  OD_PGT_OID = 26,
  OD_PGT_JSON = 114,
  OD_PGT_FLOAT4 = 700,
  OD_PGT_FLOAT8 = 701,
  OD_PGT_BPCHAR = 1042,
  OD_PGT_VARCHAR = 1043,
  OD_PGT_DATE = 1082,
  OD_PGT_TIME = 1083,
  OD_PGT_TIMESTAMP = 1114,
  OD_PGT_TIMESTAMPTZ = 1184,
  OD_PGT_INTERVAL = 1186,
  OD_PGT_TIMETZ = 1266,
  OD_PGT_BIT = 1560,
  OD_PGT_VARBIT = 1562,
  OD_PGT_NUMERIC = 1700,
  OD_PGT_UUID = 2950,
  OD_PGT_JSONB = 3802,
  /* Catalog types with an output function but no input: no server accepts a value of them. */
  OD_PGT_PG_DDL_COMMAND = 32,
  OD_PGT_PG_NODE_TREE = 194,
  OD_PGT_PG_NDISTINCT = 3361,
  OD_PGT_PG_DEPENDENCIES = 3402,
  OD_PGT_PG_BRIN_BLOOM_SUMMARY = 4600,
  OD_PGT_PG_BRIN_MINMAX_MULTI_SUMMARY = 4601,
  OD_PGT_PG_MCV_LIST = 5017,
  OD_PGT_FIRST_USER_OID = 16384,
};

#endif
