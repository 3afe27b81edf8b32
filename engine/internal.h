/*
 * internal.h -- the runtime's shared structures (not part of the public API).
 *
 * Ownership:
 *   rill_app_t     -- created on the application thread; read-only while the
 *                     stream threads run, except `stop` (atomic) and the
 *                     fatal error slot (under fatal_lock).
 *   rill_worker_t  -- one per stream thread; everything in it, its tasks, its
 *                     Kafka clients, its Postgres sink and its stores, is
 *                     owned and touched only by that thread.
 */
#ifndef RILL_INTERNAL_H
#define RILL_INTERNAL_H

#include "rill.h"
#include "json.h"
#include "pgsink.h"
#include "restore.h"
#include "wstore.h"
#include "metrics.h"
#include "aggregate.h"
#include "collector.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct rill_worker rill_worker_t;

struct rill_app {
        rill_conf_t *conf;
        rill_topology_t topo;
        const char *app_id, *input_topic, *output_topic, *bootstrap, *state_dir;
        char dlq_topic[256], repartition_topic[256], changelog_topic[256];
        char process_id[128];
        int keyed, nthreads;
        int partitions;      /* the internal topics' (aggregation tasks'), fixed */
        atomic_int sources;  /* the input's partitions: grows when some are added */
        int64_t window_ms, grace_ms, commit_ms, idle_ms, restore_timeout_ms;
        int64_t advance_ms; /* window.advance.ms, or window_ms for tumbling windows */
        rill_pgsink_spec_t pgspec;
        const rill_aggregator_t *agg;     /* topo.aggregator */
        rill_state_codec_t codec;         /* the stores' view of it */
        int pg_value[RILL_PG_COLUMNS_MAX]; /* the figure each Postgres column holds */
        int lock_fd;
        atomic_int stop;
        int64_t shutdown_ms;         /* shutdown.timeout.ms: from stop to exit */
        atomic_llong stop_mono_ms;   /* when stop was first asked; 0 = not yet */
        atomic_int *phase;           /* [nthreads] rill_phase_t, for shutdown_abandoned */
        pthread_mutex_t fatal_lock;
        char fatal[512];
        rill_worker_t **workers;
        rill_metrics_t *metrics; /* [nthreads] */
        int http_port;
};

/* Where a stream thread is in its shutdown: what a shutdown that passes its
 * deadline reports for each thread it abandons (runtime.c). */
typedef enum {
        RILL_PHASE_RUNNING,       /* the run loop: a poll, a commit cycle, a rebalance */
        RILL_PHASE_FINAL_COMMIT,  /* the shutdown commit */
        RILL_PHASE_CLOSING,       /* the consumer's close: revoke callback, leave group */
        RILL_PHASE_DESTROYING,    /* the Kafka clients' and restorer's teardown */
        RILL_PHASE_STOPPED,
} rill_phase_t;

/** Record thread @p index's shutdown phase. @locality that stream thread. */
void rill_app_set_phase(rill_app_t *app, int index, rill_phase_t phase);

/** Milliseconds left before the shutdown deadline (stop time plus
 *  shutdown.timeout.ms); the whole timeout while not stopping. Every wait
 *  of the shutdown takes its bound from here. @locality any thread. */
int64_t rill_app_shutdown_left_ms(rill_app_t *app);

typedef enum { RILL_TASK_SOURCE, RILL_TASK_AGG } rill_task_kind_t;

/* A task's life: assigned with its input partition paused; its committed
 * offset (and a source's progress) loaded; an aggregation task's store
 * restored; then running (input resumed). Only a running task processes,
 * flushes or commits anything; the stages before run in the thread's loop,
 * between polls, never in the rebalance callback. */
typedef enum {
        RILL_STAGE_POSITIONS, /* its committed offset (and progress) to load */
        RILL_STAGE_RESTORE,   /* its store to restore */
        RILL_STAGE_REWIND,    /* paused, to seek back to refetch_from (a rewind that failed) */
        RILL_STAGE_RUNNING
} rill_stage_t;

/** A task: the unit of work of one input partition. Owned by one worker. */
typedef struct rill_task {
        rill_task_kind_t kind;
        rill_stage_t stage;
        int64_t assigned_ms;  /* mono, when assigned: bounds loading positions */
        int64_t refetch_from; /* the first record dropped before running, -1 none */
        int restore_started, restore_full; /* failed attempts; a full restore */
        int64_t restore_after_ms;          /* mono: the next attempt, after a failure */
        int64_t unreachable_since_ms; /* mono: the first begin that found the changelog's
                                         leader out of reach since the last success, 0 none */
        int close_due;        /* event time crossed a window end + grace since the last commit */
        const char *topic; /* points at app's topic names */
        int32_t partition;
        /* input offsets */
        int64_t first_uncommitted; /* first offset consumed since last commit, -1 none */
        int64_t next_offset;       /* last processed + 1, -1 none */
        int64_t committed_offset;  /* next_offset at the last commit, -1 unknown */
        int64_t eof_offset;        /* fetch position at the last partition EOF (steps
                                    * over transaction markers), -1 none since the
                                    * last rewind */
        int64_t records_since_commit;
        int64_t last_activity_ms;
        /* source tasks only: event-time progress of the partition (largest
         * event time seen, or an idle advance), published to every
         * repartition partition; committed with the input offset's metadata */
        int64_t progress, committed_progress;
        int sources_sent, committed_sources_sent; /* source count announced */
        /* aggregation tasks only */
        rill_wstore_t *store;
        int64_t stream_time, committed_stream_time;
        int64_t closed_bound, committed_closed_bound;
        int64_t epoch; /* Postgres fencing epoch; 0 = not yet acquired */
        int64_t *src, *committed_src; /* unkeyed: progress per source partition [nsrc] */
        int nsrc, committed_nsrc;     /* sources known (grows), at the last commit */
        rill_wlist_t closing;   /* windows closed in the open transaction */
        unsigned char *hops;    /* hopping windows: one event's states, aligned */
} rill_task_t;

/* ---- task.c: per-task work, @locality the owning stream thread ---------------- */

/** What a task is handed by its stream thread (as Kafka Streams hands a
 *  StreamTask its ProcessorContext and RecordCollector): the application's
 *  settings, the collector of the open transaction, the thread's Postgres
 *  sink (NULL: none) and restorer, and the clocks read once per polled batch
 *  (a clock read per record was ~5% of the CPU profile). A task calls down
 *  into these and never back into the thread. Owned by the stream thread,
 *  which keeps it current (a new batch's clocks). */
typedef struct rill_task_env {
        rill_app_t *app;
        rill_collector_t *coll;
        rill_pgsink_t *pg;
        rill_restorer_t *restorer;
        int64_t batch_mono_ms, batch_wall_ms;
} rill_task_env_t;

/** Open an aggregation task's store and restore it from the changelog, in
 *  slices between the thread's polls (one restore at a time per thread).
 *  begin: @returns 0 restore started (step it), 1 nothing to restore (the
 *  store is ready), -1 error (errstr). step: reads for about slice_ms,
 *  @returns 2 more to read, 0 restored and ready, -1 failed (the store is
 *  closed). abandon: the task is revoked mid-restore. */
int rill_task_restore_begin(rill_task_env_t *env, rill_task_t *t, char *errstr, size_t errstr_size);
int rill_task_restore_step(rill_task_env_t *env, rill_task_t *t, int64_t slice_ms, char *errstr,
                           size_t errstr_size);
void rill_task_restore_abandon(rill_task_env_t *env, rill_task_t *t);
void rill_task_close(rill_task_t *t);
/** Aggregation tasks of unkeyed input: which source partition holds stream
 *  time back (*holder, -1 none) and by how much (*behind_ms: the largest
 *  progress minus the smallest; -1 while a source has not reported).
 *  @returns 0 for tasks without sources. */
int rill_task_holdback(rill_task_env_t *env, const rill_task_t *t, int *holder, int64_t *behind_ms);
/** Source tasks: the progress recovered from the committed offset's
 *  metadata (INT64_MIN when there is none). */
void rill_task_set_committed_progress(rill_task_t *t, int64_t progress);
/** Process one consumed record. Side effects go through the worker's
 *  transaction (repartition, dead letters). @returns 0, or -1 on a store
 *  error (errstr), which fails the commit cycle. */
int rill_task_process(rill_task_env_t *env, rill_task_t *t, const rd_kafka_message_t *m,
                      char *errstr, size_t errstr_size);
/** Close due windows and produce changelog, results and stream time into the
 *  open transaction; queue results for Postgres. @returns 0 or -1. */
int rill_task_flush(rill_task_env_t *env, rill_task_t *t, char *errstr, size_t errstr_size);
/** Transaction committed: apply the store (at changelog_next, the offset
 *  after the task's last changelog record in it: rill_collector_changelog_next;
 *  -1 none), move committed marks. */
int rill_task_committed(rill_task_t *t, int64_t changelog_next, char *errstr,
                        size_t errstr_size);
/** Transaction aborted: drop uncommitted state, return the offset to rewind
 *  the consumer to (-1: nothing consumed since the last commit). */
int64_t rill_task_abort(rill_task_t *t);
/** True when the task had no record for idle.timeout.ms (aggregation tasks,
 *  idle advance on): the caller then finds out whether its partition is
 *  caught up and calls rill_task_idle_advance. */
int rill_task_idle_due(rill_task_env_t *env, const rill_task_t *t, int64_t now_mono_ms);
/** Advance stream time to wall-clock time if caught_up (the partition's
 *  position is at its end: no record is waiting, queued or in the log);
 *  either way the idle clock restarts. @returns 1 when time moved. */
int rill_task_idle_advance(rill_task_env_t *env, rill_task_t *t, int64_t now_mono_ms,
                           int caught_up);

/* ---- worker.c: the stream thread ------------------------------------------------- */

rill_worker_t *rill_worker_new(rill_app_t *app, int index, char *errstr, size_t errstr_size);
void rill_worker_destroy(rill_worker_t *w);
pthread_t *rill_worker_thread(rill_worker_t *w);
/** Append to res (at most res->max, then res->truncated) the committed
 *  windows of key held by this worker's aggregation tasks: of partition only,
 *  or of every partition when partition < 0. @returns how many were added,
 *  -1 on a store error (errstr). @locality any thread (takes the task lock
 *  around each store's scan, one store at a time). */
int rill_worker_query(rill_worker_t *w, const char *key, size_t key_len, int32_t partition,
                      rill_qresult_t *res, char *errstr, size_t errstr_size);
/** Thread entry point. @locality its own stream thread. */
void *rill_worker_main(void *arg);

/* ---- runtime.c ---------------------------------------------------------------- */

/** Record a fatal error and ask every thread to stop. @locality any thread. */
void rill_app_fail(rill_app_t *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include "clock.h" /* rill_now_mono_ms, rill_now_wall_ms */

/* ---- http.c: health, readiness, metrics and queries over HTTP ------------------ */
typedef struct rill_http rill_http_t;
/** @locality application thread; the server runs its own thread. */
rill_http_t *rill_http_start(rill_app_t *app, int port, rill_query_lookup_fn lookup,
                             void *lookup_opaque, char *errstr, size_t errstr_size);
void rill_http_stop(rill_http_t *h);

/* the repartition record value: version byte, amount, event time, original bytes */
#define RILL_REPART_HDR 17
/* a watermark record of the repartition topic: version byte 2, source partition
 * (4 bytes BE), its progress (8 bytes BE), the source's next input offset (8
 * bytes BE, for verifiers), the number of input partitions the source knows
 * of (4 bytes BE; absent in records of 21 bytes); key RILL_WM_KEY. Never
 * counted, never dead-lettered. */
#define RILL_REPART_WM 2
#define RILL_WM_LEN 25
#define RILL_WM_LEN_V1 21
#define RILL_SOURCES_MAX 65536 /* a source count past this is a corrupt record */
#define RILL_WM_KEY "\x00wm"
#define RILL_WM_KEY_LEN 3
/* the commit metadata of a source task's offset: its progress */
#define RILL_PROGRESS_META "rill.progress="

#endif
