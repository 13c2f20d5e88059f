/* pg_capture.c — record raw pgoutput messages as test fixtures.
 *
 *   pg_capture "<replication dsn>" <slot> <publication> <outdir> <count> [binary]
 *
 * Runs START_REPLICATION SLOT <slot> LOGICAL 0/0 (proto_version '1', publication_names '<pub>',
 * messages 'true'[, binary 'true']) and writes the payload of each XLogData ('w') message — the
 * bytes after its 25-byte header — as one line of lowercase hex to <outdir>/stream.hex
 * (<outdir>/binary.hex with "binary"), until <count> payloads were written or nothing new came
 * for 5 seconds. Keepalives that ask for a reply get a standby status update (flush 0: the slot
 * is never advanced). A test helper, not part of odsync: it exits with status 1 on any failure.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#define IDLE_SECONDS 5
#define PG_EPOCH_OFFSET_USEC INT64_C(946684800000000)

static uint64_t be64(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | b[i];
  return v;
}

static void put64(unsigned char *b, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    b[i] = (unsigned char)v;
    v >>= 8;
  }
}

static int send_status(PGconn *conn, uint64_t received) {
  unsigned char msg[34];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - PG_EPOCH_OFFSET_USEC;
  msg[0] = 'r';
  put64(msg + 1, received); /* written */
  put64(msg + 9, 0);        /* flushed: never confirm, the slot stays where it is */
  put64(msg + 17, 0);       /* applied */
  put64(msg + 25, (uint64_t)now);
  msg[33] = 0;
  if (PQputCopyData(conn, (const char *)msg, sizeof msg) != 1 || PQflush(conn) != 0) {
    fprintf(stderr, "pg_capture: sending status failed: %s", PQerrorMessage(conn));
    return -1;
  }
  return 0;
}

static int wait_readable(PGconn *conn, int seconds) {
  fd_set rfds;
  struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
  int fd = PQsocket(conn);
  FD_ZERO(&rfds);
  FD_SET(fd, &rfds);
  int n = select(fd + 1, &rfds, NULL, NULL, &tv);
  if (n < 0 && errno != EINTR) {
    perror("pg_capture: select");
    return -1;
  }
  return n > 0;
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 7 || (argc == 7 && strcmp(argv[6], "binary") != 0)) {
    fprintf(stderr,
            "usage: pg_capture \"<replication dsn>\" <slot> <publication> <outdir> <count> "
            "[binary]\n");
    return 2;
  }
  const char *dsn = argv[1], *slot = argv[2], *pub = argv[3], *outdir = argv[4];
  long count = strtol(argv[5], NULL, 10);
  int binary = argc == 7;

  char path[4096];
  snprintf(path, sizeof path, "%s/%s", outdir, binary ? "binary.hex" : "stream.hex");
  FILE *out = fopen(path, "w");
  if (!out) {
    perror(path);
    return 1;
  }
  PGconn *conn = PQconnectdb(dsn);
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "pg_capture: connect failed: %s", PQerrorMessage(conn));
    PQfinish(conn);
    fclose(out);
    return 1;
  }
  char *eslot = PQescapeIdentifier(conn, slot, strlen(slot));
  char *epub = PQescapeLiteral(conn, pub, strlen(pub));
  char sql[1024];
  snprintf(sql, sizeof sql,
           "START_REPLICATION SLOT %s LOGICAL 0/0 (proto_version '1', publication_names %s, "
           "messages 'true'%s)",
           eslot, epub, binary ? ", binary 'true'" : "");
  PQfreemem(eslot);
  PQfreemem(epub);
  PGresult *res = PQexec(conn, sql);
  if (PQresultStatus(res) != PGRES_COPY_BOTH) {
    fprintf(stderr, "pg_capture: %s failed: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
    fclose(out);
    return 1;
  }
  PQclear(res);

  long written = 0;
  uint64_t received = 0;
  time_t last_data = time(NULL);
  int status = 0;
  while (written < count) {
    char *buf = NULL;
    int n = PQgetCopyData(conn, &buf, 1);
    if (n == 0) {
      int left = IDLE_SECONDS - (int)(time(NULL) - last_data);
      if (left <= 0) break;
      int ready = wait_readable(conn, left);
      if (ready < 0 || (ready && !PQconsumeInput(conn))) {
        fprintf(stderr, "pg_capture: read failed: %s", PQerrorMessage(conn));
        status = 1;
        break;
      }
      continue;
    }
    if (n == -1) break; /* server ended the copy */
    if (n < 0) {
      fprintf(stderr, "pg_capture: copy failed: %s", PQerrorMessage(conn));
      status = 1;
      break;
    }
    const unsigned char *m = (const unsigned char *)buf;
    if (m[0] == 'w' && n >= 25) {
      received = be64(m + 9); /* wal end */
      for (int i = 25; i < n; i++) fprintf(out, "%02x", m[i]);
      fputc('\n', out);
      written++;
      last_data = time(NULL);
    } else if (m[0] == 'k' && n >= 18) {
      if (be64(m + 1) > received) received = be64(m + 1);
      if (m[17] && send_status(conn, received) != 0) status = 1;
    } else {
      fprintf(stderr, "pg_capture: unexpected CopyData message 0x%02x (%d bytes)\n", m[0], n);
      status = 1;
    }
    PQfreemem(buf);
    if (status) break;
  }
  fprintf(stderr, "pg_capture: wrote %ld messages to %s\n", written, path);
  if (fclose(out) != 0) {
    perror(path);
    status = 1;
  }
  PQfinish(conn);
  return status;
}
