/*
 * metrics.h -- a stream thread's counters and gauges, written by that thread
 * and read by the HTTP thread. Everything here is an atomic: no lock is taken
 * on the hot path.
 *
 * Per-partition gauges are indexed by slot: [0, partitions) for source tasks
 * (input partitions), [partitions, 2*partitions) for aggregation tasks.
 */
#ifndef RILL_METRICS_H
#define RILL_METRICS_H

#include <stdatomic.h>

/* /healthz: a thread with no successful commit cycle for this long, and not
 * recovering, is stuck (docs/operations.md) */
#define RILL_STUCK_MS 180000
#include <stdint.h>

#define RILL_HIST_N 14
extern const int64_t rill_hist_bounds_ms[RILL_HIST_N];

typedef struct rill_hist {
        atomic_llong buckets[RILL_HIST_N + 1]; /* last: +Inf */
        atomic_llong count, sum_ms;
} rill_hist_t;

typedef struct rill_metrics {
        atomic_llong processed, dead_lettered, late, results, commits, aborts, pg_fenced;
        atomic_llong recoveries;   /* producer recreated after a fatal transactional error */
        atomic_int recovering;     /* 1 while the thread recreates its producer */
        atomic_llong healthy_mono_ms; /* the last loop pass that committed, or had nothing to */
        rill_hist_t commit_ms, pg_ms;
        int partitions;
        atomic_llong *lag, *store_bytes, *restore_done, *restore_total; /* [2 * partitions] */
        atomic_llong *stream_time, *held_by, *held_back_ms;             /* [2 * partitions] */
        atomic_int *owned, *restoring;                                  /* [2 * partitions] */
        atomic_int joined; /* 1 once the thread received its first assignment */
} rill_metrics_t;

/** @locality application thread, before the stream threads start. */
void rill_metrics_init(rill_metrics_t *m, int partitions);
void rill_metrics_destroy(rill_metrics_t *m);
/** @locality the owning stream thread. */
void rill_hist_observe(rill_hist_t *h, int64_t ms);

#endif
