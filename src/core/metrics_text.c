/* metrics_text.c — the Prometheus text exposition (format 0.0.4) of a metrics registry.
 * Owns: escaping and number formatting of the exposition. Reads the registry under its lock;
 * writes only into the caller's buffer. Never touches sockets. */
#include <math.h>
#include <stdio.h>

#include "core/metrics.h"
#include "core/metrics_internal.h"

static void add_escaped(od_sqlbuf *out, const char *s, bool quote) {
  char tmp[2] = {0, 0};
  for (; *s; s++) {
    if (*s == '\\') od_sqlbuf_add(out, "\\\\");
    else if (*s == '\n') od_sqlbuf_add(out, "\\n");
    else if (quote && *s == '"') od_sqlbuf_add(out, "\\\"");
    else {
      tmp[0] = *s;
      od_sqlbuf_add(out, tmp);
    }
  }
}

static void add_number(od_sqlbuf *out, double v) {
  if (isnan(v)) od_sqlbuf_add(out, "NaN");
  else if (isinf(v)) od_sqlbuf_add(out, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 1e15) od_sqlbuf_addf(out, "%.0f", v);
  else od_sqlbuf_addf(out, "%.9g", v);
}

/* name{l1="v1",...[,le="bound"]} */
static void add_series_name(od_sqlbuf *out, const od_metric_family *f, const od_metric *s, const char *suffix,
                            const char *le) {
  od_sqlbuf_add(out, f->name);
  od_sqlbuf_add(out, suffix);
  if (!f->nlabels && !le) return;
  od_sqlbuf_add(out, "{");
  for (int i = 0; i < f->nlabels; i++) {
    od_sqlbuf_addf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
    add_escaped(out, s->values[i], true);
    od_sqlbuf_add(out, "\"");
  }
  if (le) od_sqlbuf_addf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
  od_sqlbuf_add(out, "}");
}

static void write_histogram(od_sqlbuf *out, const od_metric_family *f, const od_metric *s) {
  od_histogram_snap h;
  od_histogram_read(s, &h);
  uint64_t cum = 0;
  char le[64];
  for (int b = 0; b <= h.nbounds; b++) {
    cum += h.buckets[b];
    if (b < h.nbounds) {
      od_sqlbuf buf = {0};
      add_number(&buf, h.bounds[b]);
      snprintf(le, sizeof le, "%s", buf.p ? buf.p : "0");
      od_sqlbuf_free(&buf);
    } else {
      snprintf(le, sizeof le, "+Inf");
    }
    add_series_name(out, f, s, "_bucket", le);
    od_sqlbuf_addf(out, " %llu\n", (unsigned long long)cum);
  }
  add_series_name(out, f, s, "_sum", NULL);
  od_sqlbuf_add(out, " ");
  add_number(out, (double)h.sum * h.scale);
  od_sqlbuf_add(out, "\n");
  add_series_name(out, f, s, "_count", NULL);
  od_sqlbuf_addf(out, " %llu\n", (unsigned long long)cum);
}

int od_metrics_write_prometheus(od_metrics *m, od_sqlbuf *out) {
  static const char *const types[] = {"counter", "gauge", "histogram"};
  pthread_mutex_lock(&m->lock);
  for (const od_metric_family *f = m->families; f; f = f->next) {
    if (!f->series) continue;
    od_sqlbuf_addf(out, "# HELP %s ", f->name);
    add_escaped(out, f->help, false);
    od_sqlbuf_addf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
    for (const od_metric *s = f->series; s; s = s->next) {
      if (f->type == OD_METRIC_HISTOGRAM) {
        write_histogram(out, f, s);
        continue;
      }
      add_series_name(out, f, s, "", NULL);
      od_sqlbuf_add(out, " ");
      if (f->type == OD_METRIC_COUNTER && f->scale == 1.0)
        od_sqlbuf_addf(out, "%llu", (unsigned long long)od_counter_value(s));
      else if (f->type == OD_METRIC_COUNTER)
        add_number(out, (double)od_counter_value(s) * f->scale);
      else
        add_number(out, (double)od_gauge_value(s) * f->scale);
      od_sqlbuf_add(out, "\n");
    }
  }
  pthread_mutex_unlock(&m->lock);
  return out->oom ? -1 : 0;
}
