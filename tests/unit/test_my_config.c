/* test_my_config.c — the mysql source's settings (src/sources/mysql/my_conn.c): dsn or separate
 * keys, defaults, table patterns and the captured-table test, and errors at FILE:LINE:COL that never
 * show a password. */
#include <stdlib.h>

#include "odsync/config.h"
#include "sources/mysql/my_conn.h"
#include "test.h"

static od_config *parse(const char *yaml) {
  od_config *c = NULL;
  od_error e = {0};
  if (od_config_parse(yaml, strlen(yaml), "cfg.yaml", &c, &e) != OD_OK) OD_TEST_FAIL("parse: %s", e.msg);
  return c;
}

static int load(const char *source_lines, my_settings *s, od_error *err) {
  char yaml[2048];
  snprintf(yaml, sizeof yaml,
           "pipelines:\n"
           "  - name: shop\n"
           "    source:\n"
           "      type: mysql\n"
           "%s"
           "    sink: { type: sqlite, path: /tmp/x.db }\n",
           source_lines);
  od_config *c = parse(yaml);
  int rc = my_settings_load(s, &c->pipelines[0].source, "shop", err);
  /* the settings copy what they keep: the config may go */
  od_config_free(c);
  return rc;
}

TEST(dsn_and_defaults) {
  my_settings s;
  od_error e = {0};
  CHECK_INT(load("      dsn: \"host=db1 port=3307 user=odsync password='p w' dbname=shop\"\n", &s, &e), OD_OK);
  CHECK_STR(s.host, "db1");
  CHECK_INT(s.port, 3307);
  CHECK_STR(s.user, "odsync");
  CHECK_STR(s.password, "p w");
  CHECK_STR(s.where, "mysql db1:3307/shop");
  CHECK_INT(s.ntables, 1);
  CHECK_STR(s.tables[0], "shop.*");
  CHECK(s.server_id >= 100000);
  CHECK_INT(s.heartbeat_ms, 200);
  CHECK(s.snapshot_initial);
  my_catalog *cat = my_catalog_new(&s);
  CHECK(my_catalog_captured(cat, "shop", "orders"));
  CHECK(!my_catalog_captured(cat, "other", "orders"));
  my_catalog_free(cat);
  my_settings_free(&s);
}

TEST(separate_keys_and_patterns) {
  my_settings s;
  od_error e = {0};
  setenv("OD_TEST_MY_PW", "s3cret", 1);
  CHECK_INT(load("      host: 10.0.0.5\n      user: rep\n      password: \"${env:OD_TEST_MY_PW}\"\n"
                 "      database: shop\n      server_id: 77\n      tables: [orders, \"crm.cust_*\"]\n",
                 &s, &e),
            OD_OK);
  CHECK_STR(s.host, "10.0.0.5");
  CHECK_INT(s.port, 3306);
  CHECK_STR(s.password, "s3cret");
  CHECK_INT(s.server_id, 77);
  CHECK_INT(s.ntables, 2);
  CHECK_STR(s.tables[0], "shop.orders");
  my_catalog *cat = my_catalog_new(&s);
  CHECK(my_catalog_captured(cat, "shop", "orders"));
  CHECK(!my_catalog_captured(cat, "shop", "orders2"));
  CHECK(my_catalog_captured(cat, "crm", "cust_eu"));
  CHECK(!my_catalog_captured(cat, "crm", "orders"));
  my_catalog_free(cat);
  my_settings_free(&s);
}

TEST(errors_name_the_place_and_never_the_password) {
  my_settings s;
  od_error e = {0};
  setenv("OD_TEST_MY_PW", "s3cret", 1);
  CHECK_INT(load("      dsn: \"host=db1 user=u password=${env:OD_TEST_MY_PW}\"\n      host: db2\n", &s, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:5:12: pipelines[0].source: give either dsn or host/port/user/password/database");
  CHECK(strstr(e.msg, "s3cret") == NULL);
  CHECK_INT(load("      dsn: \"host=db1 usr=u password=${env:OD_TEST_MY_PW}\"\n", &s, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:5:12: pipelines[0].source.dsn: unknown setting 'usr'");
  CHECK(strstr(e.msg, "s3cret") == NULL);
  CHECK_INT(load("      host: db1\n      user: u\n      database: shop\n      snapshot: sometimes\n", &s, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:8:17: pipelines[0].source.snapshot 'sometimes' must be initial or never");
  CHECK_INT(load("      host: db1\n      user: u\n      tables: [orders]\n", &s, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "pipelines[0].source.tables: 'orders' has no database");
  CHECK_INT(load("      host: db1\n      database: shop\n", &s, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "a user is required");
  CHECK_INT(load("      host: db1\n      user: u\n      database: shop\n      server_id: 0\n", &s, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "cfg.yaml:8:18: pipelines[0].source.server_id");
  CHECK_INT(load("      host: db1\n      user: u\n      database: shop\n      slot: x\n", &s, &e), OD_ECONFIG);
  CHECK_CONTAINS(e.msg, "unknown key 'slot'");
}
