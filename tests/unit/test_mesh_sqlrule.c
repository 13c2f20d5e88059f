/* Unit tests for src/common/mesh_sqlrule.c: how an SQL rule is told from a column rule, and the
 * evaluation statement's shape (both orientations, the local row by key, each expression closed by
 * a newline). The check itself needs a server: tests/integration/mesh_sqlrule.sh. */
#include "common/mesh_sqlrule.h"
#include "test.h"

#include <string.h>

TEST(sql_rule_split) {
  char t[64];
  const char *e = NULL;
  CHECK(od_mesh_sqlrule_split("public.items: sql: remote.version > local.version", t, sizeof t, &e));
  CHECK_STR(t, "public.items");
  CHECK_STR(e, "remote.version > local.version");
  CHECK(od_mesh_sqlrule_split("s.t:sql:  a.b = 'x: y'", t, sizeof t, &e));
  CHECK_STR(t, "s.t");
  CHECK_STR(e, "a.b = 'x: y'");
  /* column rules: two dots before the colon, or no "sql:" */
  CHECK(!od_mesh_sqlrule_split("public.items.version: higher wins", t, sizeof t, &e));
  CHECK(!od_mesh_sqlrule_split("public.items.status: sql < done", t, sizeof t, &e));
  CHECK(!od_mesh_sqlrule_split("public.items: higher wins", t, sizeof t, &e));
  CHECK(!od_mesh_sqlrule_split("items: sql: true", t, sizeof t, &e));
  CHECK(!od_mesh_sqlrule_split("public.items sql: true", t, sizeof t, &e));
  char small[4];
  CHECK(!od_mesh_sqlrule_split("public.items: sql: true", small, sizeof small, &e));
}

TEST(sql_rule_statement) {
  od_sqlbuf b = {0};
  char *keys[] = {"id", "k\"2"};
  const char *ex[] = {"remote.v > local.v -- note", "remote.s <> 'x'"};
  od_mesh_sqlrule_sql(&b, "\"public\".\"t\"", keys, 2, ex, 2);
  CHECK(!b.oom && b.p);
  CHECK(strstr(b.p, "SELECT p.i, o.sw, (remote.v > local.v -- note\n), (remote.s <> 'x'\n) FROM ") == b.p);
  CHECK(strstr(b.p, "unnest($1::int4[], $2::text[], $3::text[], $4::text[]) AS p (i, rj, lj, dk)") != NULL);
  /* a deleted side is a NULL row: the local one without reading the table, the remote one after */
  CHECK(strstr(b.p, "SELECT NULL::\"public\".\"t\" AS row WHERE p.dk = 'l' UNION ALL") != NULL);
  CHECK(strstr(b.p, "WHERE p.dk IS DISTINCT FROM 'l' AND p.lj IS NULL AND x.") != NULL);
  CHECK(strstr(b.p, "CASE WHEN p.dk = 'r' THEN NULL ELSE r.row END AS row) rv") != NULL);
  CHECK(strstr(b.p, "json_populate_record(NULL::\"public\".\"t\", p.rj::json)") != NULL);
  CHECK(strstr(b.p, "x.\"id\" = (r.row).\"id\" AND x.\"k\"\"2\" = (r.row).\"k\"\"2\"") != NULL);
  CHECK(strstr(b.p, "(VALUES (false), (true)) AS o (sw)") != NULL);
  CHECK(strstr(b.p, "CASE WHEN o.sw THEN l.row ELSE rv.row END)).*) AS remote") != NULL);
  CHECK(strstr(b.p, "CASE WHEN o.sw THEN rv.row ELSE l.row END)).*) AS local") != NULL);
  od_sqlbuf_free(&b);
}

TEST(sql_rule_semicolon) {
  /* refused: a ';' between expressions */
  CHECK(od_mesh_sqlrule_bare_semicolon("true; DELETE FROM t"));
  CHECK(od_mesh_sqlrule_bare_semicolon("remote.v = 'a' ; true"));
  CHECK(od_mesh_sqlrule_bare_semicolon("remote.v = 'it''s';"));
  CHECK(od_mesh_sqlrule_bare_semicolon("remote.v = E'\\'';'"));     /* E'\'' ends, then ; */
  CHECK(od_mesh_sqlrule_bare_semicolon("remote.\"a\"\"b\" = 1;"));
  CHECK(od_mesh_sqlrule_bare_semicolon("-- c\n;"));
  CHECK(od_mesh_sqlrule_bare_semicolon("/* /* */ */ ;"));
  CHECK(od_mesh_sqlrule_bare_semicolon("remote.a$x = $1;"));          /* no dollar quote */
  /* accepted: inside literals, identifiers, comments */
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.v > local.v"));
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.v = 'a;b'"));
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.v = 'it''s; fine'"));
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.v = E'a\\';b'"));      /* E'a\';b' */
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.v = e'a'';b'"));
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.\"x;y\" > local.\"x;y\""));
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.v = $q$a;b$q$ AND remote.w = $$;$$"));
  CHECK(!od_mesh_sqlrule_bare_semicolon("true -- ; a comment"));
  CHECK(!od_mesh_sqlrule_bare_semicolon("true /* ; /* nested ; */ ; */"));
  /* a standard string has no backslash escape: 'a\' ends there; E'a\\' too */
  CHECK(od_mesh_sqlrule_bare_semicolon("remote.v = 'a\\';'"));
  CHECK(od_mesh_sqlrule_bare_semicolon("remote.v = E'a\\\\';'"));
  /* an identifier ending in e before a quote does not start E'...' */
  CHECK(od_mesh_sqlrule_bare_semicolon("note'a\\';'"));
  /* a literal left open hides the rest (the server refuses it at prepare) */
  CHECK(!od_mesh_sqlrule_bare_semicolon("remote.v = 'a; true"));
}
