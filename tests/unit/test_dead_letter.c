/* test_dead_letter.c — a change as dead-letter JSON and back (core/dead_letter.h): names, types,
 * key, text with quotes/newlines/UTF-8, NULL, unchanged TOAST and binary values survive; the key
 * text names the key columns; broken JSON is refused with a reason. */
#include "core/dead_letter.h"
#include "odsync/error.h"
#include "test.h"

static od_column cols[3] = {
    {.name = "id", .type_oid = 23, .typmod = -1, .key = true, .type_name = "integer"},
    {.name = "note", .type_oid = 25, .typmod = -1, .type_name = "text"},
    {.name = "blob", .type_oid = 17, .typmod = -1, .type_name = "bytea"},
};
static od_relation rel = {.oid = 16384, .schema = "public", .name = "acc\"ounts", .ncolumns = 3, .columns = cols,
                          .version = 1, .has_primary_key = true};

TEST(roundtrip) {
  od_value nv[3] = {{.data = "42", .len = 2, .kind = OD_VALUE_TEXT},
                    {.data = "a \"q\"\nline é", .len = 14, .kind = OD_VALUE_TEXT},
                    {.data = "\x00\xff", .len = 2, .kind = OD_VALUE_BINARY}};
  od_value ov[3] = {{.data = "41", .len = 2, .kind = OD_VALUE_TEXT}, {.kind = OD_VALUE_NULL}, {.kind = OD_VALUE_UNCHANGED}};
  od_change ch = {.op = OD_OP_UPDATE, .old_kind = 'O', .rel = &rel, .newtup = {3, nv}, .oldtup = {3, ov}};
  char *json = NULL;
  CHECK_INT(od_dead_letter_json(&ch, &json), OD_OK);
  CHECK(strstr(json, "\"key\":{\"id\":\"41\"}") != NULL);
  CHECK(strstr(json, "\"type\":\"integer\"") != NULL);
  char key[64];
  od_dead_letter_key(&ch, key, sizeof key);
  CHECK_STR(key, "id=41");
  od_dl_change *back = NULL;
  char why[128] = "";
  CHECK_INT(od_dead_letter_parse(json, &back, why, sizeof why), OD_OK);
  const od_change *c = od_dl_change_get(back);
  CHECK_INT(c->op, OD_OP_UPDATE);
  CHECK_INT(c->old_kind, 'O');
  CHECK_STR(c->rel->schema, "public");
  CHECK_STR(c->rel->name, "acc\"ounts");
  CHECK_INT(c->rel->ncolumns, 3);
  CHECK(c->rel->has_primary_key && c->rel->columns[0].key && !c->rel->columns[1].key);
  CHECK_STR(c->rel->columns[2].type_name, "bytea");
  CHECK_INT((int)c->rel->columns[2].type_oid, 17);
  CHECK_INT(c->newtup.ncolumns, 3);
  CHECK_STR(c->newtup.values[1].data, "a \"q\"\nline é");
  CHECK_INT((int)c->newtup.values[1].len, 14);
  CHECK_INT(c->newtup.values[2].kind, OD_VALUE_BINARY);
  CHECK(c->newtup.values[2].len == 2 && memcmp(c->newtup.values[2].data, "\x00\xff", 2) == 0);
  CHECK_INT(c->oldtup.values[1].kind, OD_VALUE_NULL);
  CHECK_INT(c->oldtup.values[2].kind, OD_VALUE_UNCHANGED);
  od_dl_change_free(back);
  free(json);
}

TEST(reformatted_json_reads_the_same) {
  /* PostgreSQL's jsonb reorders keys and adds spaces; \u escapes come back as escapes */
  const char *j = "{\"new\": [\"7\", \"\\u00e9\\ud83d\\ude00\", null], \"old\": null, \"op\": \"insert\", "
                  "\"relation\": {\"oid\": 1, \"name\": \"t\", \"schema\": \"s\", \"columns\": [{\"key\": true, "
                  "\"name\": \"id\", \"type\": \"integer\", \"typmod\": -1, \"type_oid\": 23}, {\"name\": \"v\"}, "
                  "{\"name\": \"w\"}]}, \"key\": {\"id\": \"7\"}, \"table\": \"s.t\"}";
  od_dl_change *back = NULL;
  char why[128] = "";
  CHECK_INT(od_dead_letter_parse(j, &back, why, sizeof why), OD_OK);
  const od_change *c = od_dl_change_get(back);
  CHECK_INT(c->op, OD_OP_INSERT);
  CHECK_STR(c->newtup.values[1].data, "é😀");
  CHECK_INT((int)c->rel->columns[1].type_oid, 25); /* no type: text */
  CHECK_INT(c->oldtup.ncolumns, 0);
  od_dl_change_free(back);
}

TEST(broken_json_is_refused) {
  const char *bad[] = {"", "{", "[1]", "{\"op\":\"insert\"}", "{\"op\":\"nope\",\"relation\":{}}",
                       "{\"op\":\"insert\",\"relation\":{\"schema\":\"s\",\"name\":\"t\",\"columns\":[{\"name\":\"a\"}]},"
                       "\"new\":[\"1\",\"2\"]}",
                       "{\"op\":\"insert\",\"relation\":{\"schema\":\"s\",\"name\":\"t\",\"columns\":[]},\"new\":\"x\\"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    od_dl_change *back = NULL;
    char why[128] = "";
    CHECK_INT(od_dead_letter_parse(bad[i], &back, why, sizeof why), OD_EINVAL);
    CHECK(why[0] != '\0' && back == NULL);
  }
}
