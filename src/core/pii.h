/* core/pii.h — PII detection on values and column names (docs/PII.md), shared by `odsync scan`
 * (core/pii_scan.h) and the pipeline's `pii: { detect: warn | enforce }` guard (core/pii_guard.h).
 *
 * Owns: the compiled PCRE2 patterns (JIT when the platform has it) and their match data. A
 * detector is used by one thread at a time (its match data is its own). Never touches: servers,
 * files, logs.
 */
#ifndef ODSYNC_CORE_PII_H
#define ODSYNC_CORE_PII_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "odsync/error.h"

typedef enum od_pii_kind {
  OD_PII_NONE = 0,
  OD_PII_EMAIL,
  OD_PII_PHONE,
  OD_PII_CARD,    /* payment card number: 13..19 digits, Luhn check */
  OD_PII_IBAN,    /* ISO 13616, mod 97 check */
  OD_PII_SSN,     /* US Social Security number written AAA-GG-SSSS (SSA-valid ranges) */
  OD_PII_NINO,    /* UK National Insurance number (AB 12 34 56 C), HMRC's letter rules */
  OD_PII_IP,      /* IPv4 dotted quad or IPv6 */
  OD_PII_NAME,    /* by column name only */
  OD_PII_ADDRESS, /* by column name only */
  OD_PII_BIRTHDATE, /* by column name only */
  OD_PII_NKINDS
} od_pii_kind;

const char *od_pii_kind_name(od_pii_kind k);

typedef struct od_pii_detector od_pii_detector;
int od_pii_detector_new(od_pii_detector **out, od_error *err);
void od_pii_detector_free(od_pii_detector *d);

/* The kind one value looks like (leading/trailing blanks ignored), OD_PII_NONE when none. */
od_pii_kind od_pii_value(od_pii_detector *d, const char *v, size_t len);

/* What the column's name says: a value kind it hints at (email, phone, ...) or a name-only kind
 * (name, address, birth date) with *confidence; OD_PII_NONE when the name says nothing. */
od_pii_kind od_pii_column_name(od_pii_detector *d, const char *column, double *confidence);

/* Counts over a column's sampled values. */
typedef struct od_pii_tally {
  uint32_t values;                /* non-NULL values checked */
  uint32_t hits[OD_PII_NKINDS];
} od_pii_tally;

/* The verdict on a column: its kind and confidence (0..1) from the tally and the name; NONE when
 * it does not look like PII. Rule (docs/PII.md): a value kind needs at least `min_hits` matching
 * values and a share of matching values >= 0.6; confidence = that share, +0.1 when the name
 * agrees (capped 0.99), x0.8 when fewer than 10 values were seen. Otherwise the name-only kinds. */
od_pii_kind od_pii_judge(od_pii_detector *d, const char *column, const od_pii_tally *t, uint32_t min_hits,
                         double *confidence);

#endif
