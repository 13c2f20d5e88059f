/* bench/spool_compress.c — which block compression the spool should default to: one spool record
 * (a chunk of 2,048 changes shaped like bench/instructions.sh's rows: bigint, int, md5 text,
 * timestamptz, numeric) appended and read back REPEAT times with each codec; prints bytes per
 * record and CPU µs per record (clock(), same process, same data). Built by bench/spool_compress.sh.
 * Never touches: servers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/queue.h"
#include "core/spool.h"
#include "core/spool_codec.h"

int main(int argc, char **argv) {
  int repeat = argc > 1 ? atoi(argv[1]) : 200;
  static od_column cols[5] = {{.name = "id", .type_oid = 20, .key = true}, {.name = "a", .type_oid = 23},
                              {.name = "b", .type_oid = 25}, {.name = "c", .type_oid = 1184},
                              {.name = "d", .type_oid = 1700}};
  static od_relation rel = {.oid = 1, .schema = "public", .name = "bench_rows", .ncolumns = 5, .columns = cols,
                            .version = 1, .has_primary_key = true};
  od_queue q;
  od_queue_init(&q, 0, 0, 1);
  od_chunk *c = od_queue_take_free(&q);
  od_pos start = od_pos_legacy_lsn(0x1000000);
  char buf[5][64];
  for (int i = 0; i < 2048; i++) {
    od_change *ch = od_chunk_add(c);
    od_value *v = od_arena_alloc(&c->arena, 5 * sizeof *v);
    unsigned long long x = 1000003ULL * (unsigned long long)i;
    snprintf(buf[0], 64, "%d", i + 1);
    snprintf(buf[1], 64, "%llu", x % 1000003);
    snprintf(buf[2], 64, "%08llx%08llx%08llx%08llx", x * 2654435761ULL, x ^ 0x9e3779b97f4a7c15ULL, x * 40503ULL,
             x + 12345);
    snprintf(buf[3], 64, "2024-01-%02d %02d:%02d:%02d+00", 1 + i / 86400, (i / 3600) % 24, (i / 60) % 60, i % 60);
    snprintf(buf[4], 64, "%llu.%02llu", (x % 10000000) / 100, x % 100);
    for (int k = 0; k < 5; k++) {
      size_t n = strlen(buf[k]);
      v[k] = (od_value){.data = od_arena_strndup(&c->arena, buf[k], n), .len = (uint32_t)n, .kind = OD_VALUE_TEXT};
    }
    *ch = (od_change){.op = OD_OP_INSERT, .rel = &rel, .newtup = {5, v}, .index = (uint32_t)i, .txn_start = &start};
  }
  c->ntxns = 1;
  c->boundary = c->nchanges;
  c->end = od_pos_legacy_lsn(0x2000000);
  od_sbuf enc = {0}, body = {0};
  od_spool_encode(c, 1, &enc);
  printf("record: %zu changes, %zu bytes encoded\n", (size_t)c->nchanges, enc.len);
  printf("%-6s %14s %12s %16s\n", "codec", "bytes/record", "ratio", "cpu us/record");
  int codecs[3] = {OD_SPOOL_NONE, OD_SPOOL_LZ4, OD_SPOOL_ZSTD};
  for (int k = 0; k < 3; k++) {
    char dir[64] = "/tmp/od_spool_bench_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    od_spool_options o = {.dir = dir, .max_bytes = (uint64_t)1 << 40, .compression = codecs[k]};
    od_spool *s;
    od_error err;
    if (od_spool_open(&o, &s, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    od_spool_meta m = {.flags = OD_SPOOL_END, .end = c->end};
    clock_t t0 = clock();
    for (int r = 0; r < repeat; r++) {
      od_sbuf e = {0};
      od_spool_encode(c, 1, &e);
      od_spool_append(s, &m, e.data, e.len, true, &err);
      od_sbuf_free(&e);
    }
    od_spool_sync(s, &err);
    od_spool_rels *rels = od_spool_rels_new();
    for (int r = 0; r < repeat; r++) {
      od_spool_meta mm;
      if (od_spool_next(s, &mm, &body, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
      od_chunk *d = od_queue_take_free(&q);
      if (od_spool_decode(body.data, body.len, 1, rels, d, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
      od_queue_recycle(&q, d);
    }
    clock_t t1 = clock();
    double bytes = (double)od_spool_bytes(s) / repeat;
    printf("%-6s %14.0f %12.2f %16.1f\n", od_spool_codec_name(codecs[k]), bytes, enc.len / bytes,
           (double)(t1 - t0) * 1e6 / CLOCKS_PER_SEC / repeat);
    od_spool_rels_free(rels);
    od_spool_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
  }
  od_sbuf_free(&enc);
  od_sbuf_free(&body);
  od_queue_recycle(&q, c);
  od_queue_destroy(&q);
  return 0;
}
