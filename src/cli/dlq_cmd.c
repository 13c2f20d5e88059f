/* dlq_cmd.c — `odsync dlq`: list, show, replay and drop the dead letters that on_poison:
 * dead_letter stored in a pipeline's sinks (table _odsync_dead_letters).
 * replay applies a dead-lettered change to its sink (through the sink's transforms, as the
 * pipeline would) and removes the dead letter in the same sink transaction: it is applied exactly
 * once. A replay the sink rejects again leaves the dead letter there with the new error and one
 * more attempt. It never touches the checkpoint, so it may run next to a running pipeline; a row
 * the pipeline changed since is overwritten with the dead letter's older image, so replay once the
 * cause is fixed, and mind later changes of the same rows (docs/DEAD_LETTERS.md).
 * A mesh pipeline's sink is opened without its mesh session (list, show and drop run beside the
 * running mesh); its dead letters are never replayed (docs/MULTI_MASTER.md, "Poison rows in a mesh").
 * With `encryption:` keys, the row and the error of a dead letter are stored sealed (core/dl_seal.h):
 * they are opened here (a tampered one is refused and left alone), and an error stored again is
 * sealed again.
 * Owns: the sinks it opens (closed before it returns), the keyring. Never touches: sources, positions.
 */
#include "cli/dlq_cmd.h"
#include "cli/mesh_cli_util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/seal.h"
#include "core/dead_letter.h"
#include "core/dl_seal.h"
#include "core/error_class.h"
#include "core/log.h"
#include "core/transform.h"
#include "odsync/config.h"
#include "odsync/registry.h"
#include "odsync/sink.h"

static const char dlq_usage[] =
    "usage: odsync dlq list            [-c FILE] [-p PIPELINE] [-s SINK]\n"
    "       odsync dlq show ID         [-c FILE] [-p PIPELINE] [-s SINK]\n"
    "       odsync dlq replay ID|--all [-c FILE] [-p PIPELINE] [-s SINK]\n"
    "       odsync dlq drop ID         [-c FILE] [-p PIPELINE] [-s SINK]\n"
    "Dead letters are the changes a sink rejected every time (on_poison: dead_letter). replay\n"
    "applies them once their cause is fixed and removes them in the same sink transaction.\n"
    "IDs are per sink: with several sinks, name one with --pipeline and --sink.\n";

typedef struct dlq {
  const char *config_path, *pipeline, *sink, *sub;
  long long id;
  bool all;
  int found, failed, done;
  bool refused; /* a replay asked of a mesh sink: exit 2 */
  od_keyring *kr; /* `encryption:` keys, NULL without */
  const char *name; /* the sink's checkpoint name (sealing binds values to it) */
} dlq;

/* One dead letter read from a sink, kept for replay. */
typedef struct item {
  int64_t id;
  int attempts;
  char *change;   /* as stored (maybe sealed) */
  char *position;
  od_dl_change *parsed; /* replay: the change applied, kept until the sink is closed (see run_sink) */
} item;

typedef struct items {
  item *v;
  size_t n, cap;
} items;

typedef struct collect_ctx {
  items *it;
} collect_ctx;

static int collect(void *ctx, const od_dead_letter *dl) {
  items *it = ((collect_ctx *)ctx)->it;
  if (it->n == it->cap) {
    size_t cap = it->cap ? it->cap * 2 : 16;
    item *g = realloc(it->v, cap * sizeof *g);
    if (!g) return OD_ENOMEM;
    it->v = g;
    it->cap = cap;
  }
  char *c = strdup(dl->change), *pos = strdup(dl->position);
  if (!c || !pos) {
    free(c);
    free(pos);
    return OD_ENOMEM;
  }
  it->v[it->n++] = (item){.id = dl->id, .attempts = dl->attempts, .change = c, .position = pos};
  return OD_OK;
}

static void free_items(items *it) {
  for (size_t i = 0; i < it->n; i++) {
    free(it->v[i].change);
    free(it->v[i].position);
    od_dl_change_free(it->v[i].parsed);
  }
  free(it->v);
}

static void key_of(const char *json, char *out, size_t size) {
  od_dl_change *c = NULL;
  char why[128];
  if (od_dead_letter_parse(json, &c, why, sizeof why) == OD_OK) {
    od_dead_letter_key(od_dl_change_get(c), out, size);
    od_dl_change_free(c);
  } else {
    snprintf(out, size, "(unreadable change: %s)", why);
  }
}

/* The plaintext of a stored field; on failure a "(refused: ...)" note instead, and *bad set. */
static char *open_field(dlq *q, const od_dead_letter *dl, const char *field, const char *stored, bool *bad) {
  od_error err;
  od_error_clear(&err);
  char *out = NULL;
  if (od_dl_open(q->kr, q->name, dl->position, field, stored, &out, &err) == OD_OK) return out;
  fprintf(stderr, "odsync: dead letter %lld: %s\n", (long long)dl->id, err.msg);
  *bad = true;
  return strdup("(refused: see the error above)");
}

static int print_row(void *ctx, const od_dead_letter *dl) {
  dlq *q = ctx;
  char key[256];
  bool bad = false;
  char *change = open_field(q, dl, "change", dl->change, &bad), *error = open_field(q, dl, "error", dl->error, &bad);
  if (!change || !error) {
    free(change);
    free(error);
    return OD_ENOMEM;
  }
  if (bad) snprintf(key, sizeof key, "(refused)");
  else key_of(change, key, sizeof key);
  q->failed += bad;
  if (!q->found++) printf("%-6s %-20s %-22s %-24s %-8s %-24s %-8s %-9s %s\n", "ID", "PIPELINE", "POSITION", "TABLE",
                          "OP", "KEY", "ATTEMPTS", "CODE", "ERROR");
  printf("%-6lld %-20s %-22s %-24s %-8s %-24s %-8d %-9s %.160s\n", (long long)dl->id, dl->pipeline, dl->position,
         dl->table, dl->op, key, dl->attempts, dl->code[0] ? dl->code : "-", error);
  free(change);
  free(error);
  return OD_OK;
}

static int show_row(void *ctx, const od_dead_letter *dl) {
  dlq *q = ctx;
  char key[512];
  bool bad = false;
  char *change = open_field(q, dl, "change", dl->change, &bad), *error = open_field(q, dl, "error", dl->error, &bad);
  if (!change || !error) {
    free(change);
    free(error);
    return OD_ENOMEM;
  }
  if (bad) snprintf(key, sizeof key, "(refused)");
  else key_of(change, key, sizeof key);
  q->found++;
  q->failed += bad;
  printf("id:          %lld\npipeline:    %s\nposition:    %s\ntable:       %s\nop:          %s\nkey:         %s\n"
         "attempts:    %d\ncode:        %s\nerror:       %s\nstored at:   %s\nchange:      %s\nencrypted:   %s\n",
         (long long)dl->id, dl->pipeline, dl->position, dl->table, dl->op, key, dl->attempts,
         dl->code[0] ? dl->code : "-", error, dl->created_at, change, od_dl_is_sealed(dl->change) ? "yes" : "no");
  free(change);
  free(error);
  return OD_OK;
}

/* Apply one dead letter and remove it in one sink transaction; on rejection keep it, updated. */
static int replay_one(dlq *q, od_sink *s, const char *label, item *it) {
  od_error err;
  od_error_clear(&err);
  od_dl_change *c = NULL;
  char why[256], *json = NULL;
  if (od_dl_open(q->kr, q->name, it->position, "change", it->change, &json, &err)) {
    fprintf(stderr, "odsync: %s: dead letter %lld: %s; it is not replayed\n", label, (long long)it->id, err.msg);
    return 1;
  }
  int prc = od_dead_letter_parse(json, &c, why, sizeof why);
  memset(json, 0, strlen(json));
  free(json);
  if (prc) {
    fprintf(stderr, "odsync: %s: dead letter %lld: cannot read its change: %s\n", label, (long long)it->id, why);
    return 1;
  }
  bool found = false;
  int rc = s->ops->begin(s, &err);
  if (!rc) rc = s->ops->apply(s, od_dl_change_get(c), 1, &err);
  if (!rc) rc = od_sink_drop_dead_letter(s, it->id, &found, &err);
  if (!rc) rc = s->ops->commit_data(s, &err);
  char key[256];
  od_dead_letter_key(od_dl_change_get(c), key, sizeof key);
  it->parsed = c; /* its relation outlives the sink's use of it: freed after the sink is closed */
  if (!rc) {
    q->done++;
    printf("replayed dead letter %lld of %s (key %s)%s\n", (long long)it->id, label, key,
           found ? "" : " — it was already gone: nothing applied");
    return 0;
  }
  s->ops->rollback(s);
  od_error first = err;
  /* Keep it, with the new error and one more attempt. */
  char code[32] = "";
  if (first.sqlstate[0]) snprintf(code, sizeof code, "%s", first.sqlstate);
  else if (first.sqlite_code) snprintf(code, sizeof code, "sqlite:%d", first.sqlite_code);
  char *error = NULL;
  int urc = od_dl_seal(q->kr, q->name, it->position, "error", first.msg, &error, &err);
  od_dead_letter dl = {.id = it->id, .error = error, .code = code, .attempts = it->attempts + 1};
  if (!urc) urc = s->ops->begin(s, &err);
  if (!urc) urc = od_sink_put_dead_letter(s, &dl, &err);
  if (!urc) urc = s->ops->commit_data(s, &err);
  if (urc) s->ops->rollback(s);
  free(error);
  fprintf(stderr, "odsync: %s: dead letter %lld (key %s) was rejected again (%s): %s; it stays%s\n", label,
          (long long)it->id, key, od_error_class_name(od_error_classify(&first)), first.msg,
          urc ? " (and its error could not be updated)" : ", with this error");
  return 1;
}

static int run_sink(dlq *q, const od_pipeline_config *pc, const od_sink_config *sk, const od_sink_ops *ops) {
  char name[160], label[200];
  if (!strcmp(sk->name, "default")) snprintf(name, sizeof name, "%s", pc->name);
  else snprintf(name, sizeof name, "%s.%s", pc->name, sk->name);
  snprintf(label, sizeof label, "pipeline %s, sink %s", pc->name, sk->name);
  const char *author = mesh_cli_sink_author(sk);
  if (author && !strcmp(q->sub, "replay")) {
    /* Applied here, the row would be this node's own write, without its author's version: it would
     * travel on to every node as a new write and could overwrite writes made since. */
    fprintf(stderr, "odsync: %s: a mesh node's dead letters are not replayed (the row would become a new write of "
            "this node, without the version of its author, node %s, and could overwrite later writes on every "
            "node). Fix the cause, have node %s write the row again (or delete it), then drop the dead letter "
            "(odsync dlq drop ID); docs/MULTI_MASTER.md, \"Poison rows in a mesh\"\n", label, author, author);
    q->refused = true;
    return 1;
  }
  /* A mesh sink is opened as a plain one (its mesh keys left out): listing, showing and dropping
   * need its dead letter table only, and the mesh session (its node's replication origin, held by
   * the running pipeline) is neither needed nor free. */
  od_sink_config plain;
  if (!mesh_cli_sink_view(sk, false, &plain)) {
    fprintf(stderr, "odsync: %s: out of memory\n", label);
    return 1;
  }
  od_error err;
  od_error_clear(&err);
  od_sink *s = NULL;
  int orc = od_sink_open_chain(pc, &plain, ops, name, &s, &err);
  mesh_cli_sink_view_free(sk, &plain);
  if (orc) {
    fprintf(stderr, "odsync: %s: %s\n", label, err.msg);
    return 1;
  }
  int rc = 0;
  q->name = name;
  int64_t id = q->all ? 0 : (int64_t)q->id;
  items it = {0}; /* drop and replay: the dead letters read; freed after the sink is closed */
  collect_ctx cc = {.it = &it};
  if (!strcmp(q->sub, "list") || !strcmp(q->sub, "show")) {
    if (od_sink_list_dead_letters(s, name, id, !strcmp(q->sub, "list") ? print_row : show_row, q, &err)) {
      fprintf(stderr, "odsync: %s: %s\n", label, err.msg);
      rc = 1;
    }
  } else if (!strcmp(q->sub, "drop")) {
    if (od_sink_list_dead_letters(s, name, id, collect, &cc, &err)) {
      fprintf(stderr, "odsync: %s: %s\n", label, err.msg);
      rc = 1;
    }
    bool found = false;
    if (!rc && it.n) {
      q->found++;
      int drc = s->ops->begin(s, &err);
      if (!drc) drc = od_sink_drop_dead_letter(s, id, &found, &err);
      if (!drc) drc = s->ops->commit_data(s, &err);
      if (drc) {
        s->ops->rollback(s);
        fprintf(stderr, "odsync: %s: %s\n", label, err.msg);
        rc = 1;
      } else {
        printf("dropped dead letter %lld of %s\n", (long long)id, label);
        q->done++;
      }
    }
  } else { /* replay */
    if (od_sink_list_dead_letters(s, name, id, collect, &cc, &err)) {
      fprintf(stderr, "odsync: %s: %s\n", label, err.msg);
      rc = 1;
    }
    for (size_t i = 0; i < it.n && !rc; i++) {
      q->found++;
      if (replay_one(q, s, label, &it.v[i])) q->failed++;
    }
  }
  /* A sink keeps what it learned of a table by the relation's address (a pipeline's relations
   * live as long as its session): the replayed changes, relations included, are freed only after
   * the sink is closed. Freed before, the next dead letter's relation could get the same address
   * and be written as the other table (seen: a history row replayed with accounts' statement). */
  s->ops->close(s);
  free_items(&it);
  return rc;
}

int od_cli_dlq(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"pipeline", required_argument, NULL, 'p'},
                                       {"sink", required_argument, NULL, 's'},
                                       {"all", no_argument, NULL, 'a'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  dlq q = {.config_path = "odsync.yml"};
  if (argc < 1 || argv[0][0] == '-') {
    fputs(dlq_usage, argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) ? stdout : stderr);
    return argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) ? 0 : 2;
  }
  q.sub = argv[0];
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "c:p:s:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'c': q.config_path = optarg; break;
      case 'p': q.pipeline = optarg; break;
      case 's': q.sink = optarg; break;
      case 'a': q.all = true; break;
      case 'h': fputs(dlq_usage, stdout); return 0;
      default: fputs(dlq_usage, stderr); return 2;
    }
  }
  bool wants_id = strcmp(q.sub, "list") != 0;
  if (strcmp(q.sub, "list") && strcmp(q.sub, "show") && strcmp(q.sub, "replay") && strcmp(q.sub, "drop")) {
    fprintf(stderr, "odsync: dlq: unknown subcommand '%s' (list, show, replay, drop)\n", q.sub);
    return 2;
  }
  if (q.all && strcmp(q.sub, "replay") != 0) {
    fputs("odsync: dlq: --all is only for replay\n", stderr);
    return 2;
  }
  if (wants_id && !q.all) {
    char *end = NULL;
    if (optind >= argc || (q.id = strtoll(argv[optind], &end, 10)) <= 0 || *end) {
      fprintf(stderr, "odsync: dlq %s needs the ID of a dead letter (a number, from 'odsync dlq list')%s\n", q.sub,
              !strcmp(q.sub, "replay") ? " or --all" : "");
      return 2;
    }
    optind++;
  }
  if (optind < argc) {
    fprintf(stderr, "odsync: dlq: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  od_config *cfg = NULL;
  od_error err;
  od_error_clear(&err);
  if (od_config_load(q.config_path, &cfg, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    return 2;
  }
  od_log_set_level(OD_LOG_WARN);
  if (od_keyring_from_config(cfg, &q.kr, &err)) {
    fprintf(stderr, "odsync: %s\n", err.msg);
    od_config_free(cfg);
    return 2;
  }
  int rc = 0, sinks = 0, matched = 0;
  /* IDs are per sink: an ID names one dead letter only when one sink is selected. */
  if (wants_id && !q.all) {
    int n = 0;
    for (int i = 0; i < cfg->npipelines; i++)
      for (int j = 0; j < cfg->pipelines[i].nsinks; j++) {
        const od_sink_config *sk = &cfg->pipelines[i].sinks[j];
        const od_sink_ops *ops = od_sink_find(sk->section.type);
        n += (!q.pipeline || !strcmp(q.pipeline, cfg->pipelines[i].name)) && (!q.sink || !strcmp(q.sink, sk->name)) &&
             ops && (ops->caps & OD_SINK_DEAD_LETTERS);
      }
    if (n > 1) {
      fprintf(stderr, "odsync: dlq %s %lld: %d sinks keep dead letters and IDs are per sink: name one with --pipeline "
              "and --sink (see odsync dlq list)\n", q.sub, q.id, n);
      od_keyring_free(q.kr);
      od_config_free(cfg);
      return 2;
    }
  }
  for (int i = 0; i < cfg->npipelines && !rc; i++) {
    const od_pipeline_config *pc = &cfg->pipelines[i];
    if (q.pipeline && strcmp(q.pipeline, pc->name)) continue;
    matched++;
    for (int j = 0; j < pc->nsinks && !rc; j++) {
      const od_sink_config *sk = &pc->sinks[j];
      if (q.sink && strcmp(q.sink, sk->name)) continue;
      const od_sink_ops *ops = od_sink_find(sk->section.type);
      if (!ops || !(ops->caps & OD_SINK_DEAD_LETTERS)) {
        if (q.sink) {
          fprintf(stderr, "odsync: dlq: pipeline %s, sink %s (%s) keeps no dead letters\n", pc->name, sk->name,
                  sk->section.type ? sk->section.type : "?");
          rc = 2;
        }
        continue;
      }
      sinks++;
      rc = run_sink(&q, pc, sk, ops);
      if (q.refused) rc = 2; /* not for this kind of sink: like a usage error */
    }
  }
  od_keyring_free(q.kr);
  od_config_free(cfg);
  if (rc) return rc;
  if (!matched || !sinks) {
    fprintf(stderr, "odsync: dlq: no %s in %s%s%s\n", matched ? "sink that keeps dead letters" : "such pipeline",
            q.config_path, q.pipeline ? " for pipeline " : "", q.pipeline ? q.pipeline : "");
    return 2;
  }
  if (!strcmp(q.sub, "list")) {
    if (!q.found) printf("no dead letters\n");
    return q.failed ? 1 : 0;
  }
  if (!q.found && !q.all) {
    fprintf(stderr, "odsync: dlq %s: no dead letter %lld\n", q.sub, q.id);
    return 1;
  }
  if (!strcmp(q.sub, "replay")) printf("%d replayed, %d rejected again\n", q.done, q.failed);
  return q.failed ? 1 : 0;
}
