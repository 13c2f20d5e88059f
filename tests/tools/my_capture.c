/* my_capture.c — record raw MariaDB binlog events as test fixtures.
 *
 *   my_capture <host> <port> <user> <password> <binlog file> <out.hex>
 *
 * Connects as a replica (MariaDB Connector/C's mariadb_rpl API, GTID-aware:
 * @mariadb_slave_capability=4), dumps <binlog file> from position 4 to the end of the binlog
 * (non-blocking dump: the server ends the stream there) and writes every event's bytes — the
 * 19-byte header, the body and the checksum, exactly as the server sent them after the packet's
 * OK byte — as one line of
 * lowercase hex to <out.hex>. A test helper, not part of odsync: it exits with status 1 on any
 * failure. The password is a throwaway test server's.
 */
#include <mysql.h>
#include <mariadb_rpl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_sql(MYSQL *m, const char *sql) {
  if (mysql_query(m, sql) != 0) {
    fprintf(stderr, "my_capture: %s: %s\n", sql, mysql_error(m));
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: my_capture HOST PORT USER PASSWORD BINLOG_FILE OUT.hex\n");
    return 1;
  }
  MYSQL *m = mysql_init(NULL);
  if (!m || !mysql_real_connect(m, argv[1], argv[3], argv[4], NULL, (unsigned)atoi(argv[2]), NULL, 0)) {
    fprintf(stderr, "my_capture: connect %s:%s: %s\n", argv[1], argv[2], m ? mysql_error(m) : "out of memory");
    return 1;
  }
  if (run_sql(m, "SET @mariadb_slave_capability=4") || run_sql(m, "SET @master_binlog_checksum='CRC32'")) return 1;
  MARIADB_RPL *rpl = mariadb_rpl_init(m);
  if (!rpl) return 1;
  unsigned int flags = MARIADB_RPL_BINLOG_DUMP_NON_BLOCK;
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, argv[5], strlen(argv[5]));
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, 4UL);
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, 4242U);
  mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, flags);
  if (mariadb_rpl_open(rpl) != 0) {
    fprintf(stderr, "my_capture: binlog dump: %s\n", mysql_error(m));
    return 1;
  }
  FILE *out = fopen(argv[6], "w");
  if (!out) {
    perror(argv[6]);
    return 1;
  }
  MARIADB_RPL_EVENT *ev = NULL;
  int n = 0;
  while ((ev = mariadb_rpl_fetch(rpl, ev)) != NULL) {
    /* raw_data starts with the packet's OK byte (0x00) when it holds the whole packet. */
    size_t skip = ev->raw_data_size == (size_t)ev->event_length + 1 ? 1 : 0;
    for (size_t i = skip; i < ev->raw_data_size; i++) fprintf(out, "%02x", ev->raw_data[i]);
    fputc('\n', out);
    n++;
  }
  if (mysql_errno(m) != 0) {
    fprintf(stderr, "my_capture: after %d events: %s\n", n, mysql_error(m));
    return 1;
  }
  if (fclose(out) != 0) {
    perror(argv[6]);
    return 1;
  }
  mariadb_rpl_close(rpl);
  mysql_close(m);
  fprintf(stderr, "my_capture: %d events\n", n);
  return 0;
}
