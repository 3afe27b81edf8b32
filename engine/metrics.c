/*
 * metrics.c -- see metrics.h.
 */
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

const int64_t rill_hist_bounds_ms[RILL_HIST_N] = {1,   2,   5,    10,   25,   50,    100,
                                                  250, 500, 1000, 2500, 5000, 10000, 30000};

void rill_metrics_init(rill_metrics_t *m, int partitions) {
        memset(m, 0, sizeof(*m));
        m->partitions = partitions;
        size_t n = 2 * (size_t)partitions;
        m->lag = calloc(n, sizeof(*m->lag));
        m->store_bytes = calloc(n, sizeof(*m->store_bytes));
        m->restore_done = calloc(n, sizeof(*m->restore_done));
        m->restore_total = calloc(n, sizeof(*m->restore_total));
        m->stream_time = calloc(n, sizeof(*m->stream_time));
        m->held_by = calloc(n, sizeof(*m->held_by));
        m->held_back_ms = calloc(n, sizeof(*m->held_back_ms));
        m->owned = calloc(n, sizeof(*m->owned));
        m->restoring = calloc(n, sizeof(*m->restoring));
}

void rill_metrics_destroy(rill_metrics_t *m) {
        free(m->lag);
        free(m->store_bytes);
        free(m->restore_done);
        free(m->restore_total);
        free(m->stream_time);
        free(m->held_by);
        free(m->held_back_ms);
        free(m->owned);
        free(m->restoring);
}

void rill_hist_observe(rill_hist_t *h, int64_t ms) {
        int i = 0;
        while (i < RILL_HIST_N && ms > rill_hist_bounds_ms[i])
                i++;
        atomic_fetch_add(&h->buckets[i], 1);
        atomic_fetch_add(&h->count, 1);
        atomic_fetch_add(&h->sum_ms, ms);
}
