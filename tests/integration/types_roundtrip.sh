#!/usr/bin/env bash
# types_roundtrip.sh — type fidelity (docs/TYPES.md): every built-in PostgreSQL type family, plus
# enums, domains, composite and range types of our own, replicated by one odsync run with two
# pipelines (each with its own slot and publication) into an SQLite sink and into a PostgreSQL
# sink on a second server.
#
# Table public.alltypes: a primary key and one column per type, rows of edge values (numeric
# 1e-1000, 131072 integer digits, NaN and ±Infinity; float ±Infinity, NaN, -0, 5e-324,
# 1.7976931348623157e308, float4 1.1; text with every unicode plane and 1 MB long; char(n)
# padding; bytea empty and with NULs; dates 4713 BC .. 5874897 AD, ±infinity; timetz with odd
# offsets; intervals with mixed signs; multi-dimensional arrays with NULLs, quoted strings,
# lower bounds; empty, infinite and empty-multirange ranges; inet/cidr v4/v6; money extremes;
# xml; json with whitespace and duplicate keys; jsonb with escapes; oid/reg* types; pg_lsn; ...),
# one all-NULL row and one row of empty values ('' / {} / empty / \x). public.presnap (keyed: copied
# by key ranges) and public.presnap_kl (keyless: copied by page ranges) hold the same rows before
# odsync starts, so they reach both sinks through the initial snapshot (COPY text format, escapes
# and \N included) instead of the stream; the rotation below then changes every value of theirs
# through the stream (keyless rows matched on their snapshotted image). public.keyless holds the
# same rows without a key (REPLICA IDENTITY FULL: matched on the full old row, incl. xml, json,
# geometric, pg_snapshot, reg* values); public.bag holds keyless rows that are equal by '=' but
# print differently (numeric 1.0/1.00, float8 0/-0, interval '1 day'/'24:00:00', NaN; two rows that
# differ only in the sign of a float8 zero) and the source updates/deletes exactly one of them: the
# sinks must change that one.
#
# Asserts, after the inserts, after an update that rotates every value of every row to another
# row's value (NULL <-> '' included), after an update that leaves the TOASTed values unchanged
# (NULL is not confused with an unchanged value), and after a delete + re-insert:
#   PG -> PG:     (the sink with copy_min_rows: 1, so inserted rows go by COPY's text format and
#                 updates by the set-based upsert; the test checks COPY carried rows)
#                 od_compare_pg equal (row text byte-exact; target column type = the source's
#                 format_type for built-in types, `text` for user-defined ones), plus a value by
#                 value check: (id, column, NULL?, length, md5 of the text form) on both servers;
#   PG -> SQLite: od_compare equal (value AND storage class per docs/TYPES.md), and the declared
#                 SQLite types of the columns are the documented ones.
# od_compare compares floats bit for bit, so a -0 that reached SQLite as 0.0 is a difference.
# Finally both oracles must notice a one-value change (exit 1): a numeric turned from TEXT into a
# REAL in SQLite, a float8 -0 turned into 0.0 in SQLite, and a one-byte change of a text value on
# the target server.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../env/pg.sh"

test_init types_roundtrip
OD_COMPARE_PG=${OD_COMPARE_PG:-$ODSYNC_BUILD_DIR/od_compare_pg}
[[ -x "$OD_COMPARE" ]] || fail "od_compare not built at $OD_COMPARE"
[[ -x "$OD_COMPARE_PG" ]] || fail "od_compare_pg not built at $OD_COMPARE_PG"

pg_start_pair shop warehouse
SINK_DB=$TEST_TMP/out.db
CONFIG=$TEST_TMP/odsync.yaml
LOG=$TEST_TMP/odsync.log

# name type  (one per line; the order is the table's column order)
COLUMNS=(
  "c_int2 smallint" "c_int4 integer" "c_int8 bigint"
  "c_num numeric" "c_num_ps numeric(12,2)" "c_num_big numeric(1000,500)"
  "c_float4 real" "c_float8 double precision"
  "c_text text" "c_varchar character varying(10)" "c_char character(5)" "c_qchar \"char\"" "c_name name"
  "c_bytea bytea" "c_bool boolean"
  "c_date date" "c_time time without time zone" "c_timetz time with time zone"
  "c_ts timestamp without time zone" "c_tstz timestamp with time zone" "c_tstz3 timestamp(3) with time zone"
  "c_interval interval" "c_interval_ds interval day to second(3)" "c_interval_ym interval year to month"
  "c_uuid uuid" "c_json json" "c_jsonb jsonb"
  "c_int_arr integer[]" "c_text_arr text[]" "c_float8_arr double precision[]" "c_num_arr numeric[]"
  "c_ts_arr timestamp with time zone[]" "c_bytea_arr bytea[]"
  "c_mood mood" "c_mood_arr mood[]" "c_posnum posnum" "c_pair pair" "c_pair_arr pair[]"
  "c_int4range int4range" "c_int8range int8range" "c_numrange numrange" "c_tsrange tsrange"
  "c_tstzrange tstzrange" "c_daterange daterange" "c_int4multirange int4multirange"
  "c_datemultirange datemultirange" "c_floatrange floatrange"
  "c_inet inet" "c_cidr cidr" "c_macaddr macaddr" "c_macaddr8 macaddr8" "c_money money"
  "c_bit bit(8)" "c_varbit bit varying" "c_varbit16 bit varying(16)"
  "c_tsvector tsvector" "c_tsquery tsquery"
  "c_point point" "c_line line" "c_lseg lseg" "c_box box" "c_path path" "c_polygon polygon" "c_circle circle"
  "c_xml xml" "c_oid oid" "c_regclass regclass" "c_regtype regtype" "c_regproc regproc"
  "c_regnamespace regnamespace" "c_pg_lsn pg_lsn" "c_xid xid" "c_xid8 xid8" "c_tid tid"
  "c_snapshot pg_snapshot" "c_txid_snapshot txid_snapshot" "c_jsonpath jsonpath" "c_refcursor refcursor"
  "c_bigtext text"
)
# SQLite declared type per column (docs/TYPES.md); unlisted columns: TEXT. Floats have none (BLOB
# affinity, so -0 keeps its sign).
declare -A SQLITE_DECL=([id]=INTEGER [c_int2]=INTEGER [c_int4]=INTEGER [c_int8]=INTEGER [c_oid]=INTEGER
  [c_bool]=INTEGER [c_float4]="" [c_float8]="" [c_bytea]=BLOB)

names=() ddl="id integer PRIMARY KEY"
for c in "${COLUMNS[@]}"; do
  names+=("${c%% *}")
  ddl+=", $c"
done
NAMES_CSV=$(IFS=,; echo "${names[*]}")

log "source on port $SRC_PORT, target on port $DST_PORT; schema"
pg_psql <<SQL
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'très "content"', '');
CREATE DOMAIN posnum AS numeric(20,5) CHECK (VALUE >= 0);
CREATE TYPE pair AS (a int, b text, c numeric);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TABLE alltypes ($ddl);
-- Values are staged here (not published), then copied into alltypes.
CREATE TABLE stage (LIKE alltypes);
-- Keyless twin: rows are matched on their full old image (every type's equality, or text).
CREATE TABLE keyless (LIKE alltypes);
ALTER TABLE keyless REPLICA IDENTITY FULL;
-- Keyless rows that are equal by their type's equality but spelled differently.
CREATE TABLE bag (k int, n numeric, f float8, i interval, a numeric[], r numrange, p pair);
ALTER TABLE bag REPLICA IDENTITY FULL;
SQL

cat >"$CONFIG" <<YAML
state_dir: $TEST_TMP/state
pipelines:
  - name: tosqlite
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.alltypes, public.keyless, public.bag,
                                                       public.presnap, public.presnap_kl] }
    sink: { type: sqlite, path: $SINK_DB }
  - name: topg
    source: { type: postgres, dsn: "$SRC_DSN", tables: [public.alltypes, public.keyless, public.bag,
                                                       public.presnap, public.presnap_kl] }
    sink: { type: postgres, dsn: "$DST_DSN", copy_min_rows: 1 }   # new rows by COPY, however few
YAML
log "edge values"
# Rows 1..6 edge values, 7 all NULL, 8 empty values. 1 MB text: ~262,000 code points spread over
# every unicode plane (hash of the position; surrogates shifted away), incompressible enough to be
# stored out of line (TOAST).
pg_psql <<'SQL'
INSERT INTO stage (id) SELECT g FROM generate_series(1, 8) g;
UPDATE stage SET
  c_int2 = (ARRAY[-32768, 32767, 0, -1, 1, 12345, NULL, 0])[id],
  c_int4 = (ARRAY[-2147483648, 2147483647, 0, -1, 1, 7, NULL, 0])[id],
  c_int8 = (ARRAY[-9223372036854775808, 9223372036854775807, 0, -1, 1, 4294967296, NULL, 0])[id],
  c_num = (ARRAY['1e-1000', 'NaN', repeat('9', 131072) || '.' || repeat('9', 16383), '-0.000', 'Infinity',
                 '-Infinity', NULL, '0'])[id]::numeric,
  c_num_ps = (ARRAY[-9999999999.99, 9999999999.99, 0.01, -0.00, 1.50, 'NaN', NULL, 0])[id],
  c_num_big = (ARRAY[repeat('9', 500) || '.' || repeat('9', 500), '-' || repeat('1', 500) || '.5',
                     '0.' || repeat('0', 499) || '1', '1e499', 'NaN', '-0', NULL, '0'])[id]::numeric,
  c_float4 = (ARRAY['1.1', '3.4028235e+38', '-1.4e-45', 'NaN', 'Infinity', '-0', NULL, '0'])[id]::real,
  c_float8 = (ARRAY['-0', '5e-324', '1.7976931348623157e308', 'NaN', '-Infinity', 'Infinity', NULL, '0'])[id]::float8,
  c_text = (ARRAY[E'ctl \x01\x1f\x7f tab \t nl \n cr \r bs \\ q '' dq " \\N',
                  chr(1) || chr(127) || chr(128) || chr(2047) || chr(2048) || chr(65279) || chr(65535) ||
                    chr(65536) || chr(128512) || chr(917505) || chr(983040) || chr(1114111) || 'e' || chr(769),
                  'NULL', ' ', repeat('x', 100000), 'ünïcödé ☃ 日本語 🎉', NULL, ''])[id],
  c_varchar = (ARRAY[repeat('🎉', 10), '0123456789', 'a', ' ', 'é', 'NULL', NULL, ''])[id],
  c_char = (ARRAY['ab', '🎉🎉🎉🎉🎉', 'x    ', ' a', 'é', 'NULL', NULL, ''])[id],
  c_qchar = (ARRAY['a', E'\\377', E'\\001', '"', '\', ' ', NULL, ''])[id]::"char",
  c_name = (ARRAY[repeat('n', 63), 'with space', 'Ünï', 'a"b', 'x', 'pg_class', NULL, ''])[id],
  c_bytea = (ARRAY['\x00', '\x00ff00', '\x5c4e', '\xdeadbeef', '\x0a0d09', '\x27225c', NULL, '\x'])[id]::bytea,
  c_bool = (ARRAY[true, false, true, false, true, false, NULL, false])[id],
  c_date = (ARRAY['4713-01-01 BC', '5874897-12-31', 'infinity', '-infinity', '2000-02-29', '0001-01-01',
                  NULL, '1970-01-01'])[id]::date,
  c_time = (ARRAY['00:00:00', '23:59:59.999999', '24:00:00', '12:00:00.000001', '01:02:03.5', '13:14:15',
                  NULL, '00:00:00'])[id]::time,
  c_timetz = (ARRAY['00:00:00+15:59', '23:59:59.999999-15:59:59', '12:34:56.789012+05:45', '01:00:00-09:30',
                    '24:00:00+14', '10:00:00+00:00:01', NULL, '00:00:00+00'])[id]::timetz,
  c_ts = (ARRAY['4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999', 'infinity', '-infinity',
                '2000-01-01 00:00:00.000001', '1999-12-31 23:59:59.999999', NULL, '1970-01-01 00:00:00'])[id]::timestamp,
  c_tstz = (ARRAY['4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00', 'infinity', '-infinity',
                  '1900-01-01 00:00:00+05:53:28', '2024-03-31 02:30:00.123456-07', NULL, '1970-01-01 00:00:00+00'])[id]::timestamptz,
  c_tstz3 = (ARRAY['2024-01-01 12:00:00.1235+00', '2024-01-01 12:00:00.9999+00', 'infinity', '-infinity',
                   '0044-03-15 12:00:00+00 BC', '2000-01-01 00:00:00+00', NULL, '2000-01-01 00:00:00+00'])[id]::timestamptz,
  c_interval = (ARRAY['1 year 2 mons -3 days 04:05:06.789012', '-178000000 years', '178000000 years',
                      '-1 mons +1 day -00:00:00.000001', '2147483647 days 2562047788:00:54.775807',
                      '-2147483648 mons -2147483648 days -2562047788:00:54.775807', NULL, '0'])[id]::interval,
  c_interval_ds = (ARRAY['1 day 02:03:04.5678', '-00:00:00.001', '0', '100 days', '-1 day +23:59:59.999',
                         '2 hours', NULL, '0'])[id]::interval day to second(3),
  c_interval_ym = (ARRAY['1 year 11 mons', '-1 mons', '0', '100 years', '-178000000 years', '1 mon', NULL, '0'])[id]::interval year to month,
  c_uuid = (ARRAY['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
                  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A12}',
                  '123e4567-e89b-12d3-a456-426614174000', '00000000-0000-0000-0000-000000000001', NULL,
                  '11111111-1111-1111-1111-111111111111'])[id]::uuid,
  c_json = (ARRAY['  {"a" : 1, "a": 2,  "b": [ ] }  ', '"\u0000 \ud83d\ude00 \u00e9"', 'null', '[1, 2.50, 1e400, -0]',
                  E'{\n\t"nl": "x\\ny"\n}', '{"é": "ü", "k": "\"q\""}', NULL, '""'])[id]::json,
  c_jsonb = (ARRAY['{"nested": {"ü": ["\u00e9", "\"q\"", "\\", "\n\t", null, 1.50, -0, 1e400], "e": {}}}',
                   '"\ud83d\ude00"', 'null', '[[[]]]', '{"a": 1, "a": 2}', '123456789012345678901234567890.5',
                   NULL, '{}'])[id]::jsonb,
  c_int_arr = (ARRAY['{{1,NULL,3},{4,5,NULL}}', '[0:1][-1:0]={{1,2},{3,4}}', '{NULL}', '{{{1}},{{2}}}',
                     '{-2147483648,2147483647}', '{1}', NULL, '{}'])[id]::int[],
  c_text_arr = (ARRAY['{{"a b","c,d"},{"\"q\"","NULL"}}', '{"",NULL,"\\\\"," "}', '{NULL,NULL}',
                      '{"{}","x}","é🎉"}', E'{"tab\\there","nl\\nx"}', '[2:2]={x}', NULL, '{}'])[id]::text[],
  c_float8_arr = (ARRAY['{Infinity,-Infinity,NaN,-0,5e-324}', '{1.7976931348623157e308,NULL}', '{0.1,0.2}',
                        '{{1,2},{3,4}}', '{-1.5}', '{NULL}', NULL, '{}'])[id]::float8[],
  c_num_arr = (ARRAY['{NaN,Infinity,-Infinity}', '{1e-20,-0.000,1.50}', '{NULL,1}', '{{1,2},{3,4}}', '{0}',
                     '{123456789012345678901234567890}', NULL, '{}'])[id]::numeric[],
  c_ts_arr = (ARRAY['{infinity,-infinity}', '{"4713-01-01 00:00:00+00 BC"}', '{NULL}',
                    '{"2000-01-01 00:00:00.000001+00"}', '{}', '{"1999-01-01 00:00:00+00"}', NULL, '{}'])[id]::timestamptz[],
  c_bytea_arr = (ARRAY['{"\\x00",NULL,"\\x"}', '{"\\xdeadbeef"}', '{NULL}', '{}', '{"\\x5c"}', '{"\\x"}',
                       NULL, '{}'])[id]::bytea[],
  c_mood = (ARRAY['sad', 'très "content"', 'happy', 'ok', '', 'sad', NULL, 'ok'])[id]::mood,
  c_mood_arr = (ARRAY['{sad,"très \"content\"",NULL}', '{""}', '{{happy,sad},{ok,ok}}', '{NULL}', '{}', '{ok}',
                      NULL, '{}'])[id]::mood[],
  c_posnum = (ARRAY['0', '123456789012345.12345', '0.00001', '1', '999999999999999.99999', '42', NULL, '0'])[id]::posnum,
  c_pair = (ARRAY['(1,"a b",NaN)', '(,,)', '(0,"",0)', '(-1,"with ""quotes"" and \\\\",1e-5)', '(2147483647,NULL,-0)',
                  '(1,é🎉,Infinity)', NULL, '(,"",)'])[id]::pair,
  c_pair_arr = (ARRAY['{"(1,x,2)",NULL}', '{"(,,)"}', '{}', '{"(0,\"\",0)","(1,\"a,b\",2)"}', '{NULL}',
                      '{"(3,\"\\\\\\\\\",4)"}', NULL, '{}'])[id]::pair[],
  c_int4range = (ARRAY['empty', '[1,10)', '(,)', '(,5]', '[3,)', '[-2147483648,2147483647)', NULL, 'empty'])[id]::int4range,
  c_int8range = (ARRAY['[-9223372036854775808,9223372036854775807)', 'empty', '(,)', '[0,1)', '(,-1)', '[5,)',
                       NULL, 'empty'])[id]::int8range,
  c_numrange = (ARRAY['[-Infinity,Infinity]', 'empty', '(1.50,2.500]', '(,)', '[0,0]', '[1e-20,NaN]', NULL, 'empty'])[id]::numrange,
  c_tsrange = (ARRAY['["4713-01-01 00:00:00 BC","294276-12-31 23:59:59.999999"]', '[-infinity,infinity]', 'empty',
                     '(,)', '["2000-01-01 00:00:00.000001",)', '(,"2000-01-01")', NULL, 'empty'])[id]::tsrange,
  c_tstzrange = (ARRAY['[-infinity,infinity)', 'empty', '["2000-01-01 00:00:00+05:45","2000-01-02 00:00:00-09:30")',
                       '(,)', '["4713-01-01 00:00:00+00 BC",)', '[infinity,infinity]', NULL, 'empty'])[id]::tstzrange,
  c_daterange = (ARRAY['[2000-01-01,infinity)', 'empty', '[4713-01-01 BC,5874897-12-30]', '(,)', '[-infinity,2000-01-01]',
                       '(2000-01-01,2000-01-03)', NULL, 'empty'])[id]::daterange,
  c_int4multirange = (ARRAY['{}', '{[1,3),[5,7)}', '{(,)}', '{(,1],[3,4],[10,)}', '{[1,2)}', '{empty}', NULL, '{}'])[id]::int4multirange,
  c_datemultirange = (ARRAY['{[2000-01-01,2000-01-05),[2001-01-01,infinity)}', '{}', '{(,)}',
                            '{[4713-01-01 BC,4713-01-02 BC]}', '{[-infinity,infinity]}', '{}', NULL, '{}'])[id]::datemultirange,
  c_floatrange = (ARRAY['[-Infinity,Infinity]', '[1.5,2.5)', 'empty', '(,)', '[-0,0]', '[5e-324,1.7976931348623157e308]',
                        NULL, 'empty'])[id]::floatrange,
  c_inet = (ARRAY['192.168.1.5/24', '2001:db8::1/64', '0.0.0.0/0', '255.255.255.255', '::ffff:1.2.3.4/128', '::/0',
                  NULL, '127.0.0.1'])[id]::inet,
  c_cidr = (ARRAY['10.0.0.0/8', '2001:db8::/32', '::/0', '0.0.0.0/0', '192.168.100.128/25', '1.2.3.4/32', NULL, '10.0.0.0/8'])[id]::cidr,
  c_macaddr = (ARRAY['08:00:2b:01:02:03', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00', '08-00-2B-01-02-04',
                     '0800.2b01.0205', '08002b010206', NULL, '00:00:00:00:00:00'])[id]::macaddr,
  c_macaddr8 = (ARRAY['08:00:2b:01:02:03:04:05', '08:00:2b:01:02:03', 'ff:ff:ff:ff:ff:ff:ff:ff',
                      '00:00:00:00:00:00:00:00', '0800.2b01.0203.0405', '08002b0102030406', NULL, '00:00:00:00:00:00:00:00'])[id]::macaddr8,
  c_money = (ARRAY['-92233720368547758.08', '92233720368547758.07', '0', '1234.56', '-0.01', '0.005', NULL, '0'])[id]::money,
  c_bit = (ARRAY[B'10101010', B'00000000', B'11111111', B'00000001', B'10000000', B'01010101', NULL, B'00000000'])[id],
  c_varbit = (ARRAY[B'', B'1', B'0', repeat('10', 5000)::bit varying, B'0000000000000001', B'111', NULL, B''])[id],
  c_varbit16 = (ARRAY[B'1111111111111111', B'', B'0', B'101', B'1', B'00', NULL, B''])[id],
  c_tsvector = (ARRAY['a fat cat:1A,2B sat:3 ''quoted''''s'' wörd \\\\b', '', 'x:16383', '''a b'':1,2,3',
                      '🎉:1D', 'z', NULL, ''])[id]::tsvector,
  c_tsquery = (ARRAY['fat & (rat | !cat) <-> dog:*A', '''a b'' <2> c', '!x', 'é🎉:*', 'a <-> (b | c)', '''\\\\''',
                     NULL, ''])[id]::tsquery,
  c_point = (ARRAY['(1.5,-0)', '(1.7976931348623157e+308,5e-324)', '(NaN,Infinity)', '(0,0)', '(-1,-1)', '(0.1,0.2)',
                   NULL, '(0,0)'])[id]::point,
  c_line = (ARRAY['{1,-1,0}', '{0,1,-0.5}', '{1,0,1e300}', '{2,3,4}', '{-1,1,0}', '{1,2,3}', NULL, '{1,1,0}'])[id]::line,
  c_lseg = (ARRAY['[(0,0),(1,1)]', '[(-0,0.1),(1e300,-1e300)]', '[(1,1),(1,1)]', '[(0,0),(0,1)]', '[(2,3),(4,5)]',
                  '[(0.5,0.5),(1.5,1.5)]', NULL, '[(0,0),(0,0)]'])[id]::lseg,
  c_box = (ARRAY['(1,1),(0,0)', '(0,0),(0,0)', '(1e300,1e300),(-1e300,-1e300)', '(2,2),(1,1)', '(0.1,0.2),(0,0)',
                 '(5,5),(-5,-5)', NULL, '(0,0),(0,0)'])[id]::box,
  c_path = (ARRAY['[(0,0),(1,1),(2,0)]', '((0,0),(1,1))', '[(0,0)]', '((1,2),(3,4),(5,6))', '[(1e300,5e-324),(0,0)]',
                  '[(0.1,0.2),(0.3,0.4)]', NULL, '[(0,0)]'])[id]::path,
  c_polygon = (ARRAY['((0,0),(1,1),(1,0))', '((0,0))', '((1e300,1e300),(0,0),(5e-324,1))', '((1,2),(3,4),(5,6),(7,8))',
                     '((-1,-1),(1,1))', '((0.1,0.2),(0.3,0.4),(0.5,0.6))', NULL, '((0,0))'])[id]::polygon,
  c_circle = (ARRAY['<(0,0),1.5>', '<(1e300,-1e300),5e-324>', '<(0,0),0>', '<(-1,-1),1e-300>', '<(1,2),3>',
                    '<(0.1,0.2),0.3>', NULL, '<(0,0),0>'])[id]::circle,
  c_xml = (ARRAY['<a b="1">text &amp; <c/> é🎉</a>', '  plain content  ', '<r>  spaced  </r><r/>', '<!-- comment --><x/>',
                 '<?pi data?><y a=''q''/>', '<![CDATA[ <raw> ]]>', NULL, ''])[id]::xml,
  c_oid = (ARRAY[0, 4294967295, 1, 2147483648, 16384, 42, NULL, 0])[id]::oid,
  c_regclass = (ARRAY['pg_class', 'pg_catalog.pg_type', 'pg_attribute', 'pg_namespace', '-', 'pg_proc', NULL, '-']::regclass[])[id],
  c_regtype = (ARRAY['integer', '"char"', 'character varying', 'timestamp with time zone', 'double precision[]', '-',
                     NULL, 'text']::regtype[])[id],
  c_regproc = (ARRAY['now', 'pg_catalog.int4pl', '-', 'textlen', 'float8in', 'boolin', NULL, '-']::regproc[])[id],
  c_regnamespace = (ARRAY['pg_catalog', 'public', 'information_schema', 'pg_toast', '-', 'public', NULL, 'public']::regnamespace[])[id],
  c_pg_lsn = (ARRAY['0/0', 'FFFFFFFF/FFFFFFFF', '16/B374D848', '1/1', '0/1', 'A/0', NULL, '0/0'])[id]::pg_lsn,
  c_xid = (ARRAY['0', '4294967295', '3', '100', '1', '2', NULL, '0'])[id]::xid,
  c_xid8 = (ARRAY['18446744073709551615', '0', '9223372036854775808', '3', '1', '2', NULL, '0'])[id]::xid8,
  c_tid = (ARRAY['(0,1)', '(4294967295,65535)', '(0,0)', '(1,2)', '(3,4)', '(5,6)', NULL, '(0,0)'])[id]::tid,
  c_snapshot = (ARRAY['10:20:10,14,15', '1:1:', '100:200:', '3:10:3,5,7', '5:5:', '7:9:8', NULL, '1:1:'])[id]::pg_snapshot;
UPDATE stage SET
  c_txid_snapshot = (ARRAY['10:20:10,14,15', '1:1:', '100:200:', '3:10:3,5,7', '5:5:', '7:9:8', NULL, '1:1:'])[id]::txid_snapshot,
  c_jsonpath = (ARRAY['$.a[*] ? (@ > 1 && @ like_regex "^x" flag "i")', 'strict $."ü"[last]', '$', 'lax $.** ? (@ == null)',
                      '$.datetime("YYYY")', '$[0 to 2, 4]', NULL, '$'])[id]::jsonpath,
  c_refcursor = (ARRAY['my cursor', 'é🎉', ' ', 'NULL', 'x', 'c"1', NULL, ''])[id]::refcursor;
-- 1 MB of code points from every plane, and a shorter ASCII value for the other rows.
UPDATE stage SET c_bigtext = CASE id
  WHEN 1 THEN (SELECT string_agg(chr(CASE WHEN cp BETWEEN 55296 AND 57343 THEN cp - 2048 ELSE cp END), '')
               FROM (SELECT (1 + (hashint4(g)::bigint + 2147483648) % 1114111)::int AS cp FROM generate_series(1, 262144) g) x)
  WHEN 2 THEN (SELECT string_agg(md5(g::text), ' ') FROM generate_series(1, 40000) g)
  WHEN 7 THEN NULL WHEN 8 THEN '' ELSE 'short ' || id END;
SQL
[[ $(pg_psql -c "SELECT octet_length(c_bigtext) >= 1000000 FROM stage WHERE id = 1") == t ]] ||
  fail "the 1 MB text value is shorter than 1 MB"

# Rows that exist before odsync: copied by the initial snapshot.
pg_psql <<'SQL'
CREATE TABLE presnap (LIKE alltypes INCLUDING INDEXES);
INSERT INTO presnap SELECT * FROM stage;
CREATE TABLE presnap_kl (LIKE alltypes);
ALTER TABLE presnap_kl REPLICA IDENTITY FULL;
INSERT INTO presnap_kl SELECT * FROM stage;
INSERT INTO presnap_kl SELECT * FROM stage WHERE id IN (1, 7, 8);
SQL
odsync_start "$CONFIG" "$LOG"
wait_slot_active odsync_tosqlite 60
wait_slot_active odsync_topg 60
log "both slots active (initial snapshot of presnap, presnap_kl done); streaming edge values"

pg_psql -c "INSERT INTO alltypes SELECT * FROM stage WHERE id <= 4"
pg_psql -c "INSERT INTO alltypes SELECT * FROM stage WHERE id > 4"
pg_psql -c "INSERT INTO keyless SELECT * FROM stage"
pg_psql <<'SQL'
INSERT INTO bag VALUES (1, 1.0, 0, '1 day', '{1.0}', '[1.0,2)', '(1,x,1.0)'),
                       (1, 1.00, '-0', '24:00:00', '{1.00}', '[1.00,2)', '(1,x,1.00)'),
                       (2, 'NaN', 'NaN', '1 mon', '{NaN}', 'empty', '(,,)'),
                       (2, 'NaN', 'NaN', '30 days', '{NaN}', 'empty', '(,,)'),
                       (3, 1, 0, '1 day', '{1}', 'empty', '(,,)'),
                       (3, 1, '-0', '1 day', '{1}', 'empty', '(,,)');
SQL

# ---- oracles --------------------------------------------------------------------------------
TABLES=(--table public.alltypes --table public.keyless --table public.bag --table public.presnap
        --table public.presnap_kl)
compare_sqlite() { compare "${TABLES[@]}"; }
compare_pg() { "$OD_COMPARE_PG" --source "$SRC_DSN" --target "$DST_DSN" "${TABLES[@]}"; }

# (id, column, NULL?, octet length, md5) of every value's text form, same session settings.
value_digest() {
  local sql="SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres';
SET extra_float_digits = 1; SET bytea_output = 'hex';
SELECT id, v.col, v.val IS NULL, coalesce(octet_length(v.val), -1), coalesce(md5(v.val), '')
FROM alltypes, LATERAL (VALUES "
  local first=1 n
  for n in "${names[@]}"; do
    ((first)) || sql+=", "
    first=0
    sql+="('$n', $n::text)"
  done
  sql+=") AS v(col, val) ORDER BY 1, 2"
  "$@" -F '|' -c "$sql" | grep -v '^SET$' || true
}

wait_all_equal() {
  local what=$1 deadline out_s out_p
  deadline=$(($(date +%s) + ${TYPES_WAIT_S:-90}))
  while true; do
    out_s=$(compare_sqlite 2>&1) && out_p=$(compare_pg 2>&1) && break
    if (($(date +%s) >= deadline)); then
      echo "--- od_compare (sqlite) ---" >&2
      compare_sqlite >&2 || true
      echo "--- od_compare_pg ---" >&2
      compare_pg >&2 || true
      value_digest pg_psql >"$TEST_TMP/src.digest"
      value_digest dst_psql >"$TEST_TMP/dst.digest"
      diff "$TEST_TMP/src.digest" "$TEST_TMP/dst.digest" | head -40 >&2 || true
      fail "$what: sinks not equal to the source after ${TYPES_WAIT_S:-90} s"
    fi
    sleep 1
  done
  echo "$out_s"
  echo "$out_p"
  value_digest pg_psql >"$TEST_TMP/src.digest"
  value_digest dst_psql >"$TEST_TMP/dst.digest"
  local nvals
  nvals=$(wc -l <"$TEST_TMP/src.digest")
  ((nvals >= ${#names[@]})) || fail "$what: value digest of the source has only $nvals lines"
  if ! diff "$TEST_TMP/src.digest" "$TEST_TMP/dst.digest" >"$TEST_TMP/digest.diff"; then
    head -40 "$TEST_TMP/digest.diff" >&2
    fail "$what: value-by-value digests of source and target differ"
  fi
  odsync_running || fail "$what: odsync is not running"
  log "$what: sqlite and postgres sinks equal ($nvals values compared one by one)"
}

wait_all_equal "insert"

# Declared SQLite types per the documented mapping.
ndecl=0
while IFS='|' read -r col decl; do
  ndecl=$((ndecl + 1))
  want=${SQLITE_DECL[$col]-TEXT}
  [[ "$decl" == "$want" ]] || fail "SQLite column alltypes.$col is declared '$decl', expected '$want' (docs/TYPES.md)"
done < <(sqlite3 -separator '|' "$SINK_DB" "SELECT name, type FROM pragma_table_info('alltypes')")
((ndecl == ${#names[@]} + 1)) || fail "SQLite table alltypes has $ndecl columns, expected $((${#names[@]} + 1))"
# Spot checks of storage classes that od_compare derives from the same rules.
[[ $(sqlite3 "$SINK_DB" "SELECT typeof(c_float8) || ' ' || c_float8 FROM alltypes WHERE id = 4") == "text NaN" ]] ||
  fail "float8 NaN is not the TEXT 'NaN' in SQLite"
# (SQLite prints -0.0 as 0.0; its sign is checked by od_compare, which reads the double.)
[[ $(sqlite3 "$SINK_DB" "SELECT typeof(c_float8) || ' ' || (c_float8 = 0) || ' ' || typeof(c_float4) FROM alltypes WHERE id = 1") == "real 1 real" ]] ||
  fail "float8 -0 is not a REAL equal to 0 in SQLite"
[[ $(sqlite3 "$SINK_DB" "SELECT typeof(c_bytea) || length(c_bytea) FROM alltypes WHERE id = 8") == "blob0" ]] ||
  fail "empty bytea is not an empty BLOB in SQLite"
[[ $(sqlite3 "$SINK_DB" "SELECT typeof(c_text) || length(c_text) FROM alltypes WHERE id = 8") == "text0" ]] ||
  fail "empty text is not an empty TEXT in SQLite"
[[ $(sqlite3 "$SINK_DB" "SELECT typeof(c_xid8) || ':' || c_xid8 FROM alltypes WHERE id = 1") == "text:18446744073709551615" ]] ||
  fail "xid8 beyond int64 is not TEXT in SQLite"

# Target column types: built-in types as on the source, user-defined types as text.
TYPES_OF="SELECT attname, format_type(atttypid, atttypmod), atttypid >= 16384 FROM pg_attribute
           WHERE attrelid = 'public.alltypes'::regclass AND attnum > 0 AND NOT attisdropped"
declare -A DST_TYPE=()
while IFS='|' read -r col dsttype _; do DST_TYPE[$col]=$dsttype; done < <(dst_psql -F '|' -c "$TYPES_OF")
ntypes=0
while IFS='|' read -r col srctype usertype; do
  ntypes=$((ntypes + 1))
  dsttype=${DST_TYPE[$col]:-missing}
  if [[ $usertype == t ]]; then
    [[ "$dsttype" == text ]] || fail "target column $col ($srctype, user-defined) is '$dsttype', expected text"
  else
    [[ "$dsttype" == "$srctype" ]] || fail "target column $col is '$dsttype', source '$srctype'"
  fi
done < <(pg_psql -F '|' -c "$TYPES_OF")
((ntypes == ${#names[@]} + 1)) || fail "checked $ntypes target column types, expected $((${#names[@]} + 1))"
log "declared types: SQLite per docs/TYPES.md, target = source's format_type (user-defined types: text)"

log "update: every value of every row becomes another row's value (1 <- 2 <- ... <- 8 <- 1)"
set_list=""
for n in "${names[@]}"; do set_list+="${set_list:+, }$n = s.$n"; done
pg_psql -c "UPDATE alltypes t SET $set_list FROM stage s WHERE s.id = t.id % 8 + 1"
pg_psql -c "UPDATE keyless t SET $set_list FROM stage s WHERE s.id = t.id % 8 + 1"
# The snapshotted copies change too: a snapshot row must be one the stream can find and update.
pg_psql -c "UPDATE presnap t SET $set_list FROM stage s WHERE s.id = t.id % 8 + 1"
pg_psql -c "UPDATE presnap_kl t SET $set_list FROM stage s WHERE s.id = t.id % 8 + 1"
# Keyless: exactly the row the source changed, not another row equal to it by '='.
pg_psql <<'SQL'
UPDATE bag SET k = 10 WHERE n::text = '1.00';
DELETE FROM bag WHERE i = '30 days' AND i::text = '30 days';
UPDATE bag SET k = 30 WHERE k = 3 AND f::text = '-0';
SQL
wait_all_equal "rotate"

log "update leaving TOASTed values unchanged; NULLs and '' stay what they are"
pg_psql <<'SQL'
UPDATE alltypes SET c_int4 = coalesce(c_int4, 0) / 2 + 1;
UPDATE alltypes SET c_bool = NOT c_bool WHERE c_bigtext IS NULL OR c_bigtext = '' OR octet_length(c_bigtext) > 100000;
SQL
wait_all_equal "toast-unchanged"
[[ $(sqlite3 "$SINK_DB" "SELECT length(CAST(c_bigtext AS BLOB)) FROM alltypes WHERE id = 8") -ge 1000000 ]] ||
  fail "the 1 MB value did not survive an update that left it unchanged (SQLite)"

log "delete and re-insert; a second round of rotation"
pg_psql <<'SQL'
DELETE FROM alltypes WHERE id IN (3, 7);
INSERT INTO alltypes SELECT * FROM stage WHERE id = 7;
INSERT INTO alltypes SELECT * FROM stage WHERE id = 3;
DELETE FROM keyless WHERE id IN (3, 7);
INSERT INTO keyless SELECT * FROM stage WHERE id IN (3, 7);
DELETE FROM bag WHERE f::text = '0';
SQL
pg_psql -c "UPDATE alltypes t SET $set_list FROM stage s WHERE s.id = (t.id + 2) % 8 + 1"
pg_psql -c "UPDATE keyless t SET $set_list FROM stage s WHERE s.id = (t.id + 2) % 8 + 1"
wait_all_equal "delete-reinsert-rotate"

odsync_stop
# The PostgreSQL sink runs with copy_min_rows: 1, so the inserted rows went by COPY (text format):
# the 8 rows of alltypes (every type family, edge values) crossed that path, the updates the upsert.
copied=$(grep -o 'postgres sink [^ ]*: .* [0-9]* new rows by COPY' "$LOG" | grep -o '[0-9]* new rows by COPY' | awk '{n += $1} END {print n + 0}')
((copied >= 8)) || fail "the PostgreSQL sink sent only $copied new rows by COPY (copy_min_rows: 1)"
log "PostgreSQL sink: $copied new rows by COPY"

# ---- the oracles themselves must see a one-value difference ----------------------------------
sqlite3 "$SINK_DB" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
cp "$SINK_DB" "$TEST_TMP/tampered.db"
"$OD_COMPARE" --pg "$SRC_DSN" --sqlite "$TEST_TMP/tampered.db" "${TABLES[@]}" >/dev/null ||
  fail "od_compare: the copy of the sink is not equal before tampering"
sqlite3 "$TEST_TMP/tampered.db" "UPDATE alltypes SET c_num_ps = CAST(c_num_ps AS REAL) WHERE id = 1"
set +e
"$OD_COMPARE" --pg "$SRC_DSN" --sqlite "$TEST_TMP/tampered.db" --table public.alltypes >"$TEST_TMP/neg1.txt" 2>&1
rc=$?
set -e
[[ $rc -eq 1 ]] || { cat "$TEST_TMP/neg1.txt"; fail "od_compare exited $rc on a numeric stored as REAL (expected 1)"; }
negzero_id=$(pg_psql -c "SELECT id FROM alltypes WHERE c_float8::text = '-0' ORDER BY id LIMIT 1")
[[ -n $negzero_id ]] || fail "no row holds float8 -0 on the source at the end"
sqlite3 "$SINK_DB" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
cp "$SINK_DB" "$TEST_TMP/tampered0.db"
sqlite3 "$TEST_TMP/tampered0.db" "UPDATE alltypes SET c_float8 = 0.0 WHERE id = $negzero_id"
set +e
"$OD_COMPARE" --pg "$SRC_DSN" --sqlite "$TEST_TMP/tampered0.db" --table public.alltypes >"$TEST_TMP/neg0.txt" 2>&1
rc=$?
set -e
[[ $rc -eq 1 ]] || { cat "$TEST_TMP/neg0.txt"; fail "od_compare exited $rc on a float8 -0 stored as 0.0 (expected 1)"; }
grep -q -- "c_float8: source -0(REAL)" "$TEST_TMP/neg0.txt" ||
  { cat "$TEST_TMP/neg0.txt"; fail "od_compare did not name c_float8 -0 vs 0 as the difference"; }
dst_psql -c "UPDATE alltypes SET c_text = c_text || 'x' WHERE id = 2"
set +e
compare_pg >"$TEST_TMP/neg2.txt" 2>&1
rc=$?
set -e
[[ $rc -eq 1 ]] || { cat "$TEST_TMP/neg2.txt"; fail "od_compare_pg exited $rc on a changed text value (expected 1)"; }
log "all assertions passed"
