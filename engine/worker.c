/*
 * worker.c -- a stream thread: its consumer, its transactional producer, its
 * tasks, the rebalance callback and the commit cycle.
 *
 * The thread owns its tasks and hands each the same rill_task_env_t: the
 * application's settings, the record collector of the open transaction
 * (engine/collector.c: tasks send records through it), the Postgres sink,
 * the restorer and the batch clocks. Tasks call down into these, never back
 * into this file; the thread reads what they left in the collector (the
 * changelog offsets delivered) when it commits, and records its own failure
 * and shutdown phase in the shared application state (engine/appstate.c).
 *
 * The commit cycle (every commit.interval.ms, at revocation, at shutdown):
 *   1. flush every task: closed windows' results to the output topic,
 *      changelog records for every changed window and the stream time, all
 *      in the open Kafka transaction (dead letters and repartitioned records
 *      went into it as they were processed); wait for their delivery;
 *   2. send the consumer offsets of EVERY owned task with the transaction,
 *      changed or not (exactly-once v2: the consumer group metadata fences a
 *      zombie by group generation, and only in this call, so a transaction
 *      without offsets -- windows closed by an idle advance -- would not be
 *      fenced); a success also tells that the broker still counts us as the
 *      owners, which is when a deferred Postgres epoch may be taken;
 *   3. write the closed windows to Postgres in one SQL transaction with the
 *      progress row of every aggregation task, fenced by the task's epoch;
 *      a refusal means another worker took the partition: the epochs are
 *      dropped and taken again only after the broker confirms ownership;
 *   4. commit the Kafka transaction (retried while librdkafka says the
 *      pending call is retriable);
 *   5. apply each task's changes to RocksDB with the new changelog offset.
 * Every wait inside a transaction is bounded by the transaction's deadline
 * (transaction.timeout.ms after it began, less a margin), so the coordinator
 * never aborts a transaction that the thread still works on.
 * Any failure aborts the Kafka transaction, rewinds the consumer to the last
 * committed offsets, drops the uncommitted state, and retries after a bounded
 * backoff. A crash at any point is covered the same way by the next owner:
 * Kafka has nothing of the aborted transaction, Postgres has either nothing
 * or rows that the replay upserts with the same values, and RocksDB is a
 * prefix of the changelog that restore completes.
 *
 * @locality everything in this file runs on the worker's own thread; the
 * rebalance callback is served from the consumer calls made here
 * (rd_kafka_consume_batch_queue and rd_kafka_consumer_poll in consume(),
 * close_consumer's poll), the delivery-report callback from the producer's
 * flush and poll calls.
 */
#include "internal.h"
#include "memory.h"
#include "fault.h"
#include "kafka_admin.h"
#include "log.h"
#include "owners.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX 1000
#define NUDGE_AFTER 5000       /* messages between two empty polls: the queue may have been full */
#define TXN_CALL_MIN_MS 1000  /* the shortest bound given to a transaction call */
#define TXN_RETRY_CALLS 10    /* retriable abort calls before giving up */
#define BACKOFF_MAX_MS 5000
#define SOURCES_CHECK_MS 5000 /* how often the input's partition count is read */
#define SOURCES_CALL_MS 2000  /* the bound of that metadata call */
#define POSITIONS_CALL_MS 500  /* one attempt to read new tasks' committed offsets */
#define RESTORE_SLICE_MS 100   /* restore reading per pass of the loop */
#define REWIND_MAX_MS 60000    /* a task's failing seek is retried this long */
/* Kafka's error code 111, UNRELEASED_INSTANCE_ID (KIP-848: the old member of
 * a static group.instance.id is still in the group); librdkafka 2.0.2's
 * rd_kafka_resp_err_t has no name for it, newer releases do */
#define KAFKA_ERR_UNRELEASED_INSTANCE_ID 111

struct rill_worker {
        rill_app_t *app;
        int index;
        pthread_t thread;
        char name[160];
        rd_kafka_t *consumer;
        rill_collector_t coll;   /* the producer's transaction: what tasks send into */
        rill_task_env_t env;     /* what the tasks are handed */
        rd_kafka_queue_t *queue; /* the consumer's queue, for batched polls */
        unsigned rebalances;     /* rebalance callbacks served: a batch that saw one is refetched */
        int64_t redelivered;     /* records below a running task's position, skipped */
        rill_task_t **src, **agg; /* by partition; NULL when not owned */
        int src_slots;            /* length of src: grows with the input's partitions */
        rd_kafka_topic_t *input_rkt; /* the consumer's handle, for its partition count */
        int64_t sources_checked_ms;
        int starting;                /* tasks not yet running */
        rill_task_t *restoring_task; /* the one whose store is being restored */
        int64_t positions_logged_ms;
        int64_t last_commit_ms;
        int failures; /* consecutive failed commit cycles */
        int fatal;     /* the thread cannot go on (its state, its configuration) */
        int commit_pending; /* a commit left retriable (stopping): never recreate */
        int in_rebalance;   /* inside rebalance_cb: recovery waits for the loop */
        int64_t last_recovery_ms;
        int recovery_streak;
        char txn_id[400], client_id[400];
        rill_metrics_t *m;
        pthread_mutex_t tasks_lock; /* guards src/agg slot changes vs. queries */
        int64_t last_gauges_ms;
        int64_t poll_ms, commit_total_ms, empty_polls, started_ms;
        int64_t since_empty, nudges; /* messages since the queue was last empty; nudge_fetchers calls */
};

pthread_t *rill_worker_thread(rill_worker_t *w) { return &w->thread; }

int rill_worker_query(rill_worker_t *w, const char *key, size_t key_len, int32_t partition,
                      rill_qresult_t *res, char *errstr, size_t errstr_size) {
        int found = 0;
        int32_t first = partition < 0 ? 0 : partition;
        int32_t last = partition < 0 ? w->app->partitions - 1 : partition;
        for (int32_t p = first; p <= last && p < w->app->partitions && !res->truncated; p++) {
                /* The lock only keeps the store open during its own scan: a
                 * rebalance waits for one scan at most, never for a whole query. */
                rill_wlist_t l = {0};
                int rc = 0;
                pthread_mutex_lock(&w->tasks_lock);
                rill_task_t *t = w->agg[p];
                if (t && t->store &&
                    (t->stage == RILL_STAGE_RUNNING || t->stage == RILL_STAGE_REWIND))
                        rc = rill_wstore_scan_key(t->store, key, key_len, &l, errstr, errstr_size);
                pthread_mutex_unlock(&w->tasks_lock);
                for (size_t i = 0; !rc && i < l.cnt; i++) {
                        if (res->cnt >= res->max) {
                                res->truncated = 1;
                                break;
                        }
                        rill_qwindow_t *q = &res->v[res->cnt++];
                        const rill_aggregator_t *agg = w->app->agg;
                        q->partition = p;
                        q->start_ms = l.v[i].wstart;
                        q->end_ms = l.v[i].wstart + w->app->window_ms;
                        q->nfigures = agg->n_values;
                        for (int k = 0; k < agg->n_values; k++) {
                                rill_value_t v = agg->value(agg->opaque, l.v[i].state, k);
                                q->f[k] = (rill_qfigure_t){agg->values[k].name,
                                                           agg->values[k].is_double, v.i, v.d};
                        }
                        found++;
                }
                rill_wlist_free(&l);
                if (rc)
                        return -1;
        }
        return found;
}

static rill_task_t **task_slot(rill_worker_t *w, const char *topic, int32_t partition) {
        if (partition < 0)
                return NULL;
        if (!w->app->keyed && !strcmp(topic, w->app->input_topic))
                return partition < w->src_slots ? &w->src[partition] : NULL;
        return partition < w->app->partitions ? &w->agg[partition] : NULL;
}

/* Make room for source partition p. @returns 0, -1 out of memory. */
static int grow_src_slots(rill_worker_t *w, int32_t p) {
        if (p < w->src_slots)
                return 0;
        int n = p + 1 > 2 * w->src_slots ? p + 1 : 2 * w->src_slots;
        rill_task_t **v = realloc(w->src, (size_t)n * sizeof(*v));
        if (!v)
                return -1;
        memset(v + w->src_slots, 0, (size_t)(n - w->src_slots) * sizeof(*v));
        w->src = v;
        w->src_slots = n;
        return 0;
}

/* A task's slot in the thread's metrics (sources first, then aggregation
 * tasks), -1 for a source partition added while running (no gauges). */
static int metric_slot(rill_worker_t *w, rill_task_kind_t kind, int32_t p) {
        if (kind == RILL_TASK_AGG)
                return w->app->partitions + p;
        return p < w->app->partitions ? p : -1;
}

#define FOREACH_TASK(w, t)                                                                  \
        for (int _i = 0; _i < (w)->src_slots + (w)->app->partitions; _i++)                  \
                for (rill_task_t *t = _i < (w)->src_slots                                   \
                                          ? (w)->src[_i]                                    \
                                          : (w)->agg[_i - (w)->src_slots];                  \
                     t; t = NULL)

/* ---- the commit cycle ----------------------------------------------------------------- */

static int commit_needed(rill_worker_t *w) {
        if (w->coll.txn_open)
                return 1;
        int sources = atomic_load(&w->app->sources);
        FOREACH_TASK(w, t) {
                if (t->stage != RILL_STAGE_RUNNING)
                        continue;
                if (t->records_since_commit || t->stream_time != t->committed_stream_time ||
                    t->progress != t->committed_progress ||
                    (t->kind == RILL_TASK_SOURCE && t->committed_sources_sent != sources))
                        return 1;
        }
        return 0;
}

/* Abort the transaction and rewind every task to its last commit.
 * @returns -1 when the producer is unusable (fatal). */
static int abort_all(rill_worker_t *w, const char *why) {
        int rc = 0;
        if (w->coll.txn_open) {
                /* An abort that times out is retriable: librdkafka expects the
                 * same call again. An abort that does not end (retriable calls
                 * exhausted, or any other error) leaves the producer in a
                 * transaction that no later begin can start from ("not valid
                 * in state InTransaction/AbortingTransaction", for ever): the
                 * producer is recreated (txn_fatal: recover_producer), whose
                 * init_transactions aborts what this one left open. A commit
                 * still pending may get here only when stopping (commit_txn
                 * marks it: recover_producer then refuses). Inside the
                 * rebalance callback one call only: the loop recreates the
                 * producer after it, the group is not kept waiting. */
                int calls = w->in_rebalance ? 1 : TXN_RETRY_CALLS;
                for (int call = 1;; call++) {
                        rd_kafka_error_t *e =
                            rill_fault_fail("abort_unanswered")
                                ? rd_kafka_error_new(RD_KAFKA_RESP_ERR__TIMED_OUT,
                                                     "fault point abort_unanswered: the "
                                                     "coordinator did not answer the abort")
                                : rd_kafka_abort_transaction(w->coll.producer, (int)w->coll.txn_timeout_ms);
                        if (!e)
                                break;
                        int retriable = rd_kafka_error_is_retriable(e);
                        rill_log(RILL_LOG_ERROR, "txn_abort_failed",
                                 "thread=%s call=%d retriable=%d error=\"%s\"", w->name, call,
                                 retriable, rd_kafka_error_string(e));
                        rd_kafka_error_destroy(e);
                        if (!retriable || call >= calls || atomic_load(&w->app->stop)) {
                                w->coll.txn_fatal = 1;
                                rc = -1;
                                break;
                        }
                }
                rd_kafka_poll(w->coll.producer, 0); /* serve the purged deliveries now */
                rill_collector_ended(&w->coll);
        }
        w->coll.dr_failed = 0;
        if (w->env.pg)
                rill_pgsink_clear(w->env.pg);
        rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(8);
        FOREACH_TASK(w, t) {
                if (t->stage != RILL_STAGE_RUNNING)
                        continue; /* nothing uncommitted; its input is refetched when it runs */
                int64_t was = t->next_offset, committed = t->committed_offset;
                int64_t to = rill_task_abort(t);
                if (to >= 0)
                        rd_kafka_topic_partition_list_add(seek, t->topic, t->partition)->offset = to;
                if (to >= 0)
                        rill_log(RILL_LOG_INFO, "task_rewound",
                                 "thread=%s topic=%s partition=%d from=%lld to=%lld committed=%lld",
                                 w->name, t->topic, t->partition, (long long)was, (long long)to,
                                 (long long)committed);
        }
        if (seek->cnt) {
                rd_kafka_error_t *e =
                    rill_fault_fail("rewind_refused")
                        ? rd_kafka_error_new(RD_KAFKA_RESP_ERR__STATE,
                                             "fault point rewind_refused: the seek was given "
                                             "up at once, as while a rebalance is pending")
                        : rd_kafka_seek_partitions(w->consumer, seek, 10000);
                /* librdkafka 2.0.2 reports a partition's own failure only in
                 * its element (a fetcher starting or stopping) */
                for (int i = 0; !e && i < seek->cnt; i++)
                        if (seek->elems[i].err)
                                e = rd_kafka_error_new(seek->elems[i].err, "%s [%d]: %s",
                                                       seek->elems[i].topic,
                                                       seek->elems[i].partition,
                                                       rd_kafka_err2str(seek->elems[i].err));
                if (e) {
                        /* Seen while a rebalance was pending (librdkafka gave up
                         * at once): the tasks stop here, paused, and the loop
                         * seeks again after the next poll (start_tasks). Their
                         * records fetched meanwhile are dropped. */
                        rill_log(RILL_LOG_WARN, "rewind_failed",
                                 "thread=%s error=\"%s\" action=pause_and_rewind_from_the_loop",
                                 w->name, rd_kafka_error_string(e));
                        rd_kafka_error_destroy(e);
                        rd_kafka_pause_partitions(w->consumer, seek);
                        for (int i = 0; i < seek->cnt; i++) {
                                rill_task_t **slot =
                                    task_slot(w, seek->elems[i].topic, seek->elems[i].partition);
                                if (!slot || !*slot)
                                        continue;
                                (*slot)->refetch_from = seek->elems[i].offset;
                                pthread_mutex_lock(&w->tasks_lock);
                                (*slot)->stage = RILL_STAGE_REWIND;
                                pthread_mutex_unlock(&w->tasks_lock);
                                (*slot)->assigned_ms = rill_now_mono_ms();
                                w->starting++;
                        }
                }
        }
        rd_kafka_topic_partition_list_destroy(seek);
        atomic_fetch_add(&w->m->aborts, 1);
        rill_log(RILL_LOG_WARN, "txn_aborted", "thread=%s reason=\"%s\"", w->name, why);
        return rc;
}

static int acquire_epochs(rill_worker_t *w, char *errstr, size_t errstr_size) {
        if (!w->env.pg)
                return 0;
        FOREACH_TASK(w, t) {
                if (t->kind != RILL_TASK_AGG || t->epoch > 0 || t->stage != RILL_STAGE_RUNNING)
                        continue;
                t->epoch = rill_pgsink_acquire_epoch(w->env.pg, t->topic, t->partition, errstr,
                                                     errstr_size);
                if (t->epoch < 0) {
                        t->epoch = 0;
                        return -1;
                }
        }
        return 0;
}

/* Lag from the consumer's cached high watermarks (no network call), store
 * sizes at most every 5 s (a RocksDB property read). */
static void update_gauges(rill_worker_t *w) {
        int64_t now = rill_now_mono_ms();
        int sizes = now - w->last_gauges_ms >= 5000;
        if (sizes)
                w->last_gauges_ms = now;
        FOREACH_TASK(w, t) {
                int slot = metric_slot(w, t->kind, t->partition);
                if (slot < 0 || t->stage != RILL_STAGE_RUNNING)
                        continue;
                int64_t lo, hi;
                if (!rd_kafka_get_watermark_offsets(w->consumer, t->topic, t->partition, &lo, &hi) &&
                    hi >= 0) {
                        int64_t pos = t->committed_offset >= 0 ? t->committed_offset : lo;
                        atomic_store(&w->m->lag[slot], hi > pos ? hi - pos : 0);
                }
                if (sizes && t->store)
                        atomic_store(&w->m->store_bytes[slot], (long long)rill_wstore_size_bytes(t->store));
                int holder;
                int64_t behind;
                atomic_store(&w->m->stream_time[slot],
                             t->kind == RILL_TASK_SOURCE ? t->progress : t->stream_time);
                if (rill_task_holdback(&w->env, t, &holder, &behind)) {
                        atomic_store(&w->m->held_by[slot], holder);
                        atomic_store(&w->m->held_back_ms[slot], behind);
                }
        }
}

/* The input position of a task: the next offset it will process. Known
 * from its records once it processed one; before that it is the group's
 * committed offset, or, for a partition the group never committed, its log
 * start (auto.offset.reset=earliest), both loaded at assignment.
 * @returns the position, or -1 while unknown. No broker call: this runs in
 * the commit cycle, inside the transaction's deadline. */
static int64_t task_position(rill_worker_t *w, rill_task_t *t) {
        (void)w;
        return t->next_offset; /* loaded at assignment (load_positions), then kept */
}

/* Idle advance rule: only a partition that is caught up -- its position at
 * the end of the log, read now from the broker (read_uncommitted, so an
 * open transaction's records count as waiting) -- may be called idle. Not
 * having processed a record for a while says nothing by itself: the thread
 * may have been busy elsewhere (a commit backoff, a long Postgres statement,
 * another task's restore) with this partition's backlog queued. */
static int task_caught_up(rill_worker_t *w, rill_task_t *t) {
        int64_t pos = task_position(w, t), hi;
        if (t->eof_offset > pos) /* the fetcher stepped over markers to get there */
                pos = t->eof_offset;
        char errstr[256];
        int bound = w->coll.txn_open && rill_collector_left_ms(&w->coll) < 2000 ? (int)rill_collector_left_ms(&w->coll) : 2000;
        if (pos < 0 || bound <= 0 ||
            rill_restorer_end_offsets(w->env.restorer, t->topic, t->partition, bound, NULL, &hi,
                                      errstr, sizeof(errstr)))
                return 0;
        return pos >= hi;
}

/* From the consumer's cached high watermark (no broker call): the task's
 * position is within one batch of the end. */
static int task_nearly_caught_up(rill_worker_t *w, rill_task_t *t) {
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(w->consumer, t->topic, t->partition, &lo, &hi) ||
            hi < 0 || t->next_offset < 0)
                return 0;
        return hi - t->next_offset <= BATCH_MAX;
}

/* Send the consumer offsets of every owned task into the open transaction:
 * the next offset of what it processed, or, for a task that processed
 * nothing since its assignment, its position (the committed offset it
 * started from, see task_position). @returns 0 or -1 (errstr). */
static int send_offsets(rill_worker_t *w, char *errstr, size_t errstr_size) {
        rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(8);
        FOREACH_TASK(w, t) {
                int64_t pos = task_position(w, t);
                if (pos < 0)
                        continue;
                rd_kafka_topic_partition_t *e =
                    rd_kafka_topic_partition_list_add(offs, t->topic, t->partition);
                e->offset = pos;
                if (t->kind == RILL_TASK_SOURCE && t->progress != INT64_MIN) {
                        /* freed by the list */
                        char meta[64];
                        int n = snprintf(meta, sizeof(meta), "%s%lld", RILL_PROGRESS_META,
                                         (long long)t->progress);
                        e->metadata = malloc((size_t)n);
                        memcpy(e->metadata, meta, (size_t)n);
                        e->metadata_size = (size_t)n;
                }
        }
        int rc = 0;
        if (!offs->cnt) {
                snprintf(errstr, errstr_size,
                         "a transaction with no input offsets to send (no owned task has a "
                         "known position): it could not be fenced, so it is aborted");
                rc = -1;
        } else {
                rd_kafka_consumer_group_metadata_t *cgmd =
                    rd_kafka_consumer_group_metadata(w->consumer);
                rd_kafka_error_t *e =
                    rd_kafka_send_offsets_to_transaction(w->coll.producer, offs, cgmd, rill_collector_wait_ms(&w->coll));
                rd_kafka_consumer_group_metadata_destroy(cgmd);
                if (e)
                        rc = rill_collector_error(&w->coll, e, "cannot send offsets to transaction", errstr,
                                       errstr_size);
        }
        rd_kafka_topic_partition_list_destroy(offs);
        return rc;
}

/* Commit the open transaction. A commit that times out is retriable, and
 * librdkafka then expects the same call again (an abort now would conflict
 * with the pending commit); retried while it stays retriable: once the
 * coordinator answers again, the answer is the commit or a fatal error (it
 * aborted the transaction after transaction.timeout.ms). Bounded: past two
 * transaction timeouts plus 30 s after the deadline, the thread fails. @returns 0, or -1 (errstr; w->fatal when the producer is
 * unusable, txn_requires_abort cases are left to the abort path). */
static int commit_txn(rill_worker_t *w, char *errstr, size_t errstr_size) {
        for (int call = 1;; call++) {
                rd_kafka_error_t *e = rd_kafka_commit_transaction(w->coll.producer, rill_collector_wait_ms(&w->coll));
                if (!e)
                        return 0;
                if (!rd_kafka_error_is_retriable(e) || atomic_load(&w->app->stop)) {
                        /* stopping with the commit still pending: its outcome
                         * is unknown, no new producer may complete it */
                        if (rd_kafka_error_is_retriable(e))
                                w->commit_pending = 1;
                        return rill_collector_error(&w->coll, e, "cannot commit transaction", errstr, errstr_size);
                }
                rill_log(RILL_LOG_WARN, "txn_commit_retry", "thread=%s call=%d error=\"%s\"",
                         w->name, call, rd_kafka_error_string(e));
                if (rill_now_mono_ms() > w->coll.txn_deadline_ms + 2 * w->coll.txn_timeout_ms + 30000) {
                        /* The commit is still pending and its outcome unknown: a
                         * new producer's init_transactions may complete it, and
                         * replaying the rewound input would then commit it twice.
                         * Not recoverable in-process: the next owner restores
                         * from what Kafka committed. */
                        w->fatal = 1;
                        return rill_collector_error(&w->coll, e, "commit did not complete after retries", errstr,
                                         errstr_size);
                }
                rd_kafka_error_destroy(e);
        }
}

static int commit_cycle(rill_worker_t *w, char *errstr, size_t errstr_size) {
        int64_t t0 = rill_now_mono_ms();
        size_t nresults = 0;
        /* 1. flush tasks into the transaction and wait for delivery */
        FOREACH_TASK(w, t) {
                if (t->stage != RILL_STAGE_RUNNING)
                        continue;
                if (rill_task_flush(&w->env, t, errstr, errstr_size))
                        return -1;
                nresults += t->closing.cnt;
        }
        rill_fault("results_in_flight");
        int64_t t_flush = rill_now_mono_ms();
        rd_kafka_resp_err_t ferr = rd_kafka_flush(w->coll.producer, rill_collector_wait_ms(&w->coll));
        if (ferr) {
                snprintf(errstr, errstr_size, "producer flush: %s (within the transaction's "
                         "deadline, %lld ms after it began)", rd_kafka_err2str(ferr),
                         (long long)(w->coll.txn_timeout_ms - w->coll.txn_timeout_ms / 5));
                return -1;
        }
        if (w->coll.dr_failed) {
                snprintf(errstr, errstr_size, "%s", w->coll.dr_err);
                return -1;
        }
        /* 2. the offsets of every owned task with the transaction */
        int64_t t_pg = rill_now_mono_ms();
        int member = 0; /* the broker confirmed our group membership just now */
        if (w->coll.txn_open) {
                if (send_offsets(w, errstr, errstr_size))
                        return -1;
                member = 1;
        }
        /* 3. Postgres: results and fenced progress in one SQL transaction */
        if (w->env.pg) {
                if (member && acquire_epochs(w, errstr, errstr_size))
                        return -1;
                FOREACH_TASK(w, t) {
                        if (t->kind == RILL_TASK_AGG && t->epoch > 0 &&
                            t->stage == RILL_STAGE_RUNNING)
                                rill_pgsink_add_progress(w->env.pg, t->topic, t->partition,
                                                         t->next_offset, t->epoch);
                }
                if (rill_pgsink_pending_results(w->env.pg) && !member) {
                        snprintf(errstr, errstr_size, "results without a Kafka transaction");
                        return -1;
                }
                int64_t pg0 = rill_now_mono_ms();
                int rc = rill_pgsink_commit(w->env.pg, errstr, errstr_size);
                if (rc > 0) {
                        /* Fenced: a task's epoch is no longer the newest, so
                         * another worker took its partition at some point. Do not
                         * retry with the same epochs (that never passes); take
                         * new ones in the next cycle, after the broker confirms
                         * that we own the partitions (a zombie fails there). */
                        FOREACH_TASK(w, t) {
                                if (t->kind == RILL_TASK_AGG)
                                        t->epoch = 0;
                        }
                        atomic_fetch_add(&w->m->pg_fenced, 1);
                        rill_log(RILL_LOG_WARN, "epoch_lost",
                                 "thread=%s action=take_new_epochs_once_ownership_is_confirmed",
                                 w->name);
                }
                if (rc)
                        return -1;
                rill_hist_observe(&w->m->pg_ms, rill_now_mono_ms() - pg0);
        }
        /* 4. commit the Kafka transaction */
        int64_t t_txn = rill_now_mono_ms();
        int lost = 0; /* fail point kafka_commit_lost (tests) */
        if (w->coll.txn_open) {
                rill_fault("before_kafka_commit");
                if (rill_fault_fail("kafka_commit_lost")) {
                        rd_kafka_error_t *e = rd_kafka_abort_transaction(
                            w->coll.producer, rill_collector_wait_ms(&w->coll));
                        if (e) {
                                rill_log(RILL_LOG_WARN, "fault_abort_failed", "thread=%s error=\"%s\"",
                                         w->name, rd_kafka_error_string(e));
                                rd_kafka_error_destroy(e);
                        }
                        lost = 1;
                } else if (commit_txn(w, errstr, errstr_size)) {
                        return -1;
                }
                w->coll.txn_open = 0;
                rill_fault("after_kafka_commit");
        }
        /* 5. RocksDB catches up. The transaction is committed: a failure here
         * must not rewind anything (that would count committed input twice).
         * The thread stops; on restart the store restores the committed
         * changelog tail it is missing. */
        int64_t t_apply = rill_now_mono_ms();
        FOREACH_TASK(w, t) {
                if (t->stage != RILL_STAGE_RUNNING)
                        continue;
                if (rill_task_committed(t, rill_collector_changelog_next(&w->coll, t->partition),
                                        errstr, errstr_size)) {
                        w->fatal = 1;
                        return -1;
                }
        }
        if (lost)
                rill_fault_die(); /* the stores applied what the broker lost */
        rill_collector_ended(&w->coll); /* the stores have the changelog offsets */
        atomic_fetch_add(&w->m->commits, 1);
        atomic_fetch_add(&w->m->results, (long long)nresults);
        rill_hist_observe(&w->m->commit_ms, rill_now_mono_ms() - t0);
        update_gauges(w);
        int64_t t_end = rill_now_mono_ms();
        rill_log(RILL_LOG_DEBUG, "commit_phases",
                 "thread=%s tasks_ms=%lld flush_ms=%lld pg_ms=%lld txn_ms=%lld apply_ms=%lld",
                 w->name, (long long)(t_flush - t0), (long long)(t_pg - t_flush),
                 (long long)(t_txn - t_pg), (long long)(t_apply - t_txn),
                 (long long)(t_end - t_apply));
        if (nresults)
                rill_log(RILL_LOG_INFO, "commit", "thread=%s results=%zu elapsed_ms=%lld",
                         w->name, nresults, (long long)(rill_now_mono_ms() - t0));
        return 0;
}

static void sleep_ms(rill_worker_t *w, int64_t ms) {
        int64_t end = rill_now_mono_ms() + ms;
        while (!atomic_load(&w->app->stop) && rill_now_mono_ms() < end) {
                struct timespec ts = {0, 50 * 1000000};
                nanosleep(&ts, NULL);
        }
}

/* ---- recovery ------------------------------------------------------------------------- */

static int make_producer(rill_worker_t *w, char *errstr, size_t errstr_size);
static int init_transactions(rill_worker_t *w, int64_t deadline_ms);

/* A fatal transactional error (the producer fenced, its epoch bumped by the
 * coordinator after a transaction timeout, a commit that never completed):
 * the producer is unusable, the thread is not. As Kafka Streams does for a
 * migrated task: the tasks' uncommitted state is dropped and their input
 * rewound (abort_all, before this), the producer is destroyed and made
 * again with the same transactional id -- init_transactions fences the old
 * one and aborts whatever it left open -- and the thread goes on. The
 * consumer keeps its membership; if it lost it meanwhile, librdkafka rejoins
 * and the rebalance callback closes the lost tasks. Postgres epochs are kept:
 * a write of a task that is no longer ours is refused there (epoch_lost).
 * Recoveries within a minute of each other back off, 1 s doubling to 30 s.
 * @returns 0 recovered, -1 the thread cannot go on (stopping, or no new
 * producer can be made: rill_app_fail was called). */
static int recover_producer(rill_worker_t *w, const char *why) {
        if (w->commit_pending || atomic_load(&w->app->stop)) {
                w->fatal = 1; /* stopping: the next owner restores from what Kafka committed */
                return -1;
        }
        int64_t t0 = rill_now_mono_ms();
        atomic_store(&w->m->recovering, 1);
        w->recovery_streak = w->last_recovery_ms && t0 - w->last_recovery_ms < 60000
                                 ? w->recovery_streak + 1
                                 : 0;
        w->last_recovery_ms = t0;
        int64_t backoff =
            w->recovery_streak ? 1000LL << (w->recovery_streak < 5 ? w->recovery_streak - 1 : 5) : 0;
        if (backoff > 30000)
                backoff = 30000;
        rill_log(RILL_LOG_WARN, "thread_recovering",
                 "thread=%s reason=\"%s\" action=recreate_producer backoff_ms=%lld", w->name, why,
                 (long long)backoff);
        sleep_ms(w, backoff);
        for (int i = 0; i < RILL_OUT_N; i++) {
                if (w->coll.out[i])
                        rd_kafka_topic_destroy(w->coll.out[i]);
                w->coll.out[i] = NULL;
        }
        rd_kafka_purge(w->coll.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                        RD_KAFKA_PURGE_F_NON_BLOCKING);
        rd_kafka_destroy(w->coll.producer);
        w->coll.producer = NULL;
        rill_collector_ended(&w->coll);
        w->coll.txn_fatal = 0;
        w->coll.dr_failed = 0;
        char errstr[512];
        if (make_producer(w, errstr, sizeof(errstr))) {
                rill_app_fail(w->app, "thread %s: cannot make a new producer: %s", w->name, errstr);
                w->fatal = 1;
                return -1;
        }
        if (init_transactions(w, rill_now_mono_ms() + RILL_STUCK_MS)) {
                if (!atomic_load(&w->app->stop))
                        rill_app_fail(w->app, "thread %s: cannot initialise transactions of the "
                                              "new producer within %d ms", w->name, RILL_STUCK_MS);
                w->fatal = 1;
                return -1;
        }
        atomic_fetch_add(&w->m->recoveries, 1);
        atomic_store(&w->m->recovering, 0);
        rill_log(RILL_LOG_WARN, "thread_recovered", "thread=%s elapsed_ms=%lld recoveries=%lld",
                 w->name, (long long)(rill_now_mono_ms() - t0),
                 (long long)atomic_load(&w->m->recoveries));
        return 0;
}

/* After a failed cycle or record: rewind every task to its last commit,
 * then recover the producer if it is the one that failed, or stop the
 * thread (rill_app_fail) for what cannot be recovered (the state store, the
 * consumer's positions). @returns 0 rewound (the caller backs off and
 * retries), 1 recovered (a new producer, go on), -1 the thread stops. */
static int fail_or_recover(rill_worker_t *w, const char *errstr) {
        if (!w->fatal) {
                if (w->coll.txn_fatal)
                        rill_collector_ended(&w->coll); /* nothing can be aborted with that producer */
                abort_all(w, errstr);
        }
        if (w->fatal) {
                rill_app_fail(w->app, "thread %s: unrecoverable error: %s", w->name, errstr);
                return -1;
        }
        if (w->coll.txn_fatal) {
                /* in the rebalance callback the group waits: run_loop
                 * recreates the producer right after it (txn_fatal stays) */
                if (w->in_rebalance)
                        return 1;
                return recover_producer(w, errstr) ? -1 : 1;
        }
        return 0;
}

/* Run a commit cycle; on failure abort, rewind and back off.
 * @returns 0 committed (or nothing to do), -1 failed (state rewound). */
static int commit_all(rill_worker_t *w, const char *why) {
        char errstr[512] = "";
        w->last_commit_ms = rill_now_mono_ms();
        if (!commit_needed(w)) {
                atomic_store(&w->m->healthy_mono_ms, w->last_commit_ms);
                return 0;
        }
        if (!commit_cycle(w, errstr, sizeof(errstr))) {
                atomic_store(&w->m->healthy_mono_ms, rill_now_mono_ms());
                if (w->failures)
                        rill_log(RILL_LOG_INFO, "commit_recovered", "thread=%s after_failures=%d",
                                 w->name, w->failures);
                w->failures = 0;
                return 0;
        }
        rill_log(RILL_LOG_ERROR, "commit_failed", "thread=%s during=%s error=\"%s\"", w->name,
                 why, errstr);
        if (fail_or_recover(w, errstr))
                return -1;
        w->failures++;
        int64_t backoff = 100LL << (w->failures < 6 ? w->failures : 6);
        sleep_ms(w, backoff < BACKOFF_MAX_MS ? backoff : BACKOFF_MAX_MS);
        return -1;
}

/* ---- rebalance -------------------------------------------------------------------------- */

/* Shells for newly assigned partitions: no store opened, no broker or
 * Postgres call. Their input stays paused (rebalance_cb) until start_tasks
 * has loaded their positions and restored their stores. */
static void assign_tasks(rill_worker_t *w, rd_kafka_topic_partition_list_t *parts,
                         rd_kafka_topic_partition_list_t *paused) {
        for (int i = 0; i < parts->cnt; i++) {
                const char *topic = parts->elems[i].topic;
                int32_t p = parts->elems[i].partition;
                if (!w->app->keyed && !strcmp(topic, w->app->input_topic) &&
                    grow_src_slots(w, p)) {
                        rill_app_fail(w->app, "out of memory for source partition %d", p);
                        continue;
                }
                rill_task_t **slot = task_slot(w, topic, p);
                if (!slot) {
                        /* keyed input: its partitions are the aggregation
                         * partitions, and a seller moved to a new partition
                         * would split its windows between two tasks */
                        rill_log(RILL_LOG_ERROR, "input_partition_not_consumed",
                                 "thread=%s topic=%s partition=%d partitions=%d "
                                 "hint=\"partitions were added to keyed input (--input-keyed); "
                                 "its records stay in Kafka: run without --input-keyed (a new "
                                 "application id) to consume them\"",
                                 w->name, topic, p, w->app->partitions);
                        continue;
                }
                if (*slot)
                        continue;
                rill_task_t *t = calloc(1, sizeof(*t));
                int src = !w->app->keyed && !strcmp(topic, w->app->input_topic);
                t->kind = src ? RILL_TASK_SOURCE : RILL_TASK_AGG;
                t->stage = RILL_STAGE_POSITIONS;
                t->assigned_ms = rill_now_mono_ms();
                t->refetch_from = -1;
                t->topic = src || w->app->keyed ? w->app->input_topic : w->app->repartition_topic;
                t->partition = p;
                t->first_uncommitted = t->next_offset = t->committed_offset = -1;
                t->eof_offset = -1;
                t->progress = t->committed_progress = INT64_MIN;
                t->last_activity_ms = rill_now_mono_ms();
                t->stream_time = t->committed_stream_time = INT64_MIN;
                int mslot = metric_slot(w, t->kind, p);
                if (t->kind == RILL_TASK_AGG)
                        atomic_store(&w->m->restoring[mslot], 1);
                pthread_mutex_lock(&w->tasks_lock);
                *slot = t;
                pthread_mutex_unlock(&w->tasks_lock);
                if (mslot >= 0)
                        atomic_store(&w->m->owned[mslot], 1);
                rd_kafka_topic_partition_list_add(paused, topic, p);
                w->starting++;
                rill_log(RILL_LOG_INFO, "task_created", "thread=%s topic=%s partition=%d kind=%s",
                         w->name, topic, p, src ? "source" : "aggregate");
        }
}

/* A task's committed offset (or, for a partition the group never
 * committed, its log start) and, for a source task, the progress its
 * previous owner committed with it as metadata: lateness at the source
 * continues from where the committed input stopped, and a replay decides
 * it the same way. */
static void apply_position(rill_worker_t *w, rill_task_t *t, const rd_kafka_topic_partition_t *e) {
        if (e->offset >= 0) {
                t->next_offset = t->committed_offset = e->offset;
        } else {
                int64_t lo;
                char errstr[256];
                if (!rill_restorer_end_offsets(w->env.restorer, e->topic, e->partition, 2000, &lo,
                                               NULL, errstr, sizeof(errstr)))
                        t->next_offset = t->committed_offset = lo;
        }
        size_t plen = strlen(RILL_PROGRESS_META);
        if (t->kind == RILL_TASK_SOURCE && e->metadata && e->metadata_size > plen &&
            e->metadata_size < 64 && !memcmp(e->metadata, RILL_PROGRESS_META, plen)) {
                char num[64];
                memcpy(num, (char *)e->metadata + plen, e->metadata_size - plen);
                num[e->metadata_size - plen] = '\0';
                char *end;
                long long v = strtoll(num, &end, 10);
                if (*end == '\0')
                        rill_task_set_committed_progress(t, v);
        }
}

static int start_running(rill_worker_t *w, rill_task_t *t);

/* The committed offsets of the tasks waiting for them (one round trip for
 * all, bounded by POSITIONS_CALL_MS; tried again at the next pass). A
 * read_committed consumer gets no answer while the previous owner's offset
 * commit is still pending in an open transaction (UNSTABLE_OFFSET_COMMIT),
 * which lasts at most transaction.timeout.ms: a source task waits up to that
 * plus 10 s after its assignment, then starts without them (logged as
 * source_progress_unknown; the consumer still waits for its committed
 * offset before it fetches, and the task learns its position from its first
 * record). An aggregate task waits until they are readable (a hanging
 * transaction of a broker: docs/troubleshooting.md), since its store must
 * be checked against them before it restores. */
static void load_positions(rill_worker_t *w) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
        FOREACH_TASK(w, t) {
                if (t->stage == RILL_STAGE_POSITIONS)
                        rd_kafka_topic_partition_list_add(l, t->topic, t->partition);
        }
        if (!l->cnt) {
                rd_kafka_topic_partition_list_destroy(l);
                return;
        }
        rd_kafka_resp_err_t err = rd_kafka_committed(w->consumer, l, POSITIONS_CALL_MS);
        int64_t now = rill_now_mono_ms();
        for (int i = 0; i < l->cnt; i++) {
                rd_kafka_topic_partition_t *e = &l->elems[i];
                rill_task_t **slot = task_slot(w, e->topic, e->partition);
                rill_task_t *t = slot ? *slot : NULL;
                if (!t || t->stage != RILL_STAGE_POSITIONS)
                        continue;
                rd_kafka_resp_err_t te = err ? err : e->err;
                if (te) {
                        /* an aggregate task waits for it whatever the time:
                         * its store is checked against it before it restores
                         * (rill_task_restore_begin), and its consumer does not
                         * fetch without it anyway */
                        if (now - t->assigned_ms < w->coll.txn_timeout_ms + 10000 ||
                            t->kind == RILL_TASK_AGG) {
                                if (now - w->positions_logged_ms >= 5000) {
                                        w->positions_logged_ms = now;
                                        rill_log(RILL_LOG_WARN, "committed_offsets_retry",
                                                 "thread=%s partitions=%d error=\"%s\"", w->name,
                                                 l->cnt, rd_kafka_err2str(te));
                                }
                                continue; /* again at the next pass */
                        }
                        rill_log(RILL_LOG_WARN, "source_progress_unknown",
                                 "thread=%s topic=%s partition=%d error=\"%s\" "
                                 "action=start_without_committed_progress",
                                 w->name, e->topic, e->partition, rd_kafka_err2str(te));
                } else {
                        apply_position(w, t, e);
                }
                if (t->kind == RILL_TASK_AGG)
                        t->stage = RILL_STAGE_RESTORE;
                else
                        start_running(w, t);
        }
        rd_kafka_topic_partition_list_destroy(l);
}

/* A task is complete: take its Postgres epoch (before it processes
 * anything; deferred while Postgres is away, see acquire_epochs), rewind
 * its input to the first record dropped while it was not running, and
 * resume it. A seek that fails leaves it paused, in RILL_STAGE_REWIND,
 * tried again at the next pass for REWIND_MAX_MS. @returns 0 running. */
static int start_running(rill_worker_t *w, rill_task_t *t) {
        /* a task back from REWIND whose epoch was dropped (epoch_lost) takes
         * it after the broker confirms ownership, as every running task */
        if (t->kind == RILL_TASK_AGG && w->env.pg && t->epoch == 0 && t->stage != RILL_STAGE_REWIND) {
                char errstr[512];
                t->epoch = rill_pgsink_acquire_epoch(w->env.pg, t->topic, t->partition, errstr,
                                                     sizeof(errstr));
                if (t->epoch < 0) {
                        rill_log(RILL_LOG_WARN, "epoch_deferred", "partition=%d error=\"%s\"",
                                 t->partition, errstr);
                        t->epoch = 0;
                }
        }
        /* The task's input resumes where its state stands: at the first
         * record dropped while it was not running, but never before the
         * committed offset its store was restored to. librdkafka's own fetch
         * started from the committed offset it read itself, at assignment;
         * a commit between that read and load_positions' would otherwise
         * replay records the store already holds. */
        /* fail point fetch_behind (tests): the first record dropped before
         * the task ran is reported 20 records before its position */
        int64_t behind = t->next_offset >= 20 ? t->next_offset - 20 : -1;
        if (behind >= 0 && t->stage != RILL_STAGE_REWIND && rill_fault_fail("fetch_behind"))
                t->refetch_from = behind;
        if (t->refetch_from >= 0 && t->next_offset > t->refetch_from) {
                rill_log(RILL_LOG_WARN, "fetch_before_position",
                         "thread=%s topic=%s partition=%d fetched_from=%lld position=%lld "
                         "action=seek_to_position",
                         w->name, t->topic, t->partition, (long long)t->refetch_from,
                         (long long)t->next_offset);
                t->refetch_from = t->next_offset;
        }
        /* fail point position_behind (tests): the consumer's fetch starts 20
         * records before the task's position, past the check above */
        if (behind >= 0 && t->stage != RILL_STAGE_REWIND && rill_fault_fail("position_behind"))
                t->refetch_from = behind;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, t->topic, t->partition)->offset = t->refetch_from;
        if (t->refetch_from >= 0) {
                t->eof_offset = -1; /* seen again at the end after the seek */
                rd_kafka_error_t *e = rd_kafka_seek_partitions(w->consumer, l, 10000);
                if (!e && l->elems[0].err)
                        e = rd_kafka_error_new(l->elems[0].err, "%s",
                                               rd_kafka_err2str(l->elems[0].err));
                if (e) {
                        int64_t waited = rill_now_mono_ms() - t->assigned_ms;
                        rill_log(RILL_LOG_WARN, "rewind_retry",
                                 "thread=%s topic=%s partition=%d offset=%lld waited_ms=%lld "
                                 "error=\"%s\"",
                                 w->name, t->topic, t->partition, (long long)t->refetch_from,
                                 (long long)waited, rd_kafka_error_string(e));
                        rd_kafka_error_destroy(e);
                        rd_kafka_topic_partition_list_destroy(l);
                        if (waited > REWIND_MAX_MS) {
                                rill_app_fail(w->app, "thread %s: cannot rewind %s [%d] to %lld "
                                              "for %lld ms", w->name, t->topic, t->partition,
                                              (long long)t->refetch_from, (long long)waited);
                                w->fatal = 1;
                        }
                        pthread_mutex_lock(&w->tasks_lock);
                        t->stage = RILL_STAGE_REWIND; /* again at the next pass */
                        pthread_mutex_unlock(&w->tasks_lock);
                        return -1;
                }
        }
        rd_kafka_resume_partitions(w->consumer, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (t->stage == RILL_STAGE_REWIND)
                rill_log(RILL_LOG_INFO, "rewind_done",
                         "thread=%s topic=%s partition=%d offset=%lld waited_ms=%lld", w->name,
                         t->topic, t->partition, (long long)t->refetch_from,
                         (long long)(rill_now_mono_ms() - t->assigned_ms));
        t->refetch_from = -1;
        pthread_mutex_lock(&w->tasks_lock); /* queries read the stage under it */
        t->stage = RILL_STAGE_RUNNING;
        pthread_mutex_unlock(&w->tasks_lock);
        t->last_activity_ms = rill_now_mono_ms();
        w->starting--;
        int mslot = metric_slot(w, t->kind, t->partition);
        if (t->kind == RILL_TASK_AGG)
                atomic_store(&w->m->restoring[mslot], 0);
        return 0;
}

/* A restore's begin found the changelog's leader out of reach (a broker
 * down, errstr): not a failure of the task, which waits, for as long as
 * restore.timeout.ms from the first such begin, trying again every few
 * seconds (the thread goes on with its other tasks meanwhile); past that it
 * counts as a failed attempt. @returns 1 when it counts.
 * @locality the stream thread. */
static int restore_unreachable(rill_worker_t *w, rill_task_t *t, const char *errstr) {
        int64_t now = rill_now_mono_ms();
        if (!t->unreachable_since_ms)
                t->unreachable_since_ms = now;
        int64_t waited = now - t->unreachable_since_ms;
        if (waited >= w->app->restore_timeout_ms)
                return 1;
        int64_t backoff = waited < 4000 ? 1000 : 4000;
        rill_log(RILL_LOG_WARN, "task_open_waiting",
                 "thread=%s partition=%d waited_ms=%lld retry_in_ms=%lld error=\"%s\" "
                 "hint=\"the broker holding the changelog's partition is out of reach; the task "
                 "waits for it up to restore.timeout.ms\"",
                 w->name, t->partition, (long long)waited, (long long)backoff, errstr);
        t->restore_after_ms = now + backoff;
        return 0;
}

/* Restore the stores of new aggregation tasks, one at a time, for at most
 * RESTORE_SLICE_MS per pass of the loop: the consumer keeps polling (no
 * eviction whatever the state size) and the thread's running tasks keep
 * processing and committing meanwhile. */
static void restore_some(rill_worker_t *w) {
        char errstr[512];
        rill_task_t *t = w->restoring_task;
        if (!t) {
                int64_t now = rill_now_mono_ms();
                FOREACH_TASK(w, c) {
                        if (c->stage == RILL_STAGE_RESTORE && now >= c->restore_after_ms) {
                                t = c;
                                break;
                        }
                }
                if (!t)
                        return;
                int mslot = metric_slot(w, t->kind, t->partition);
                rill_restorer_progress(w->env.restorer, &w->m->restore_done[mslot],
                                       &w->m->restore_total[mslot]);
                rill_fault("restore_begin");
                int rc = rill_task_restore_begin(&w->env, t, errstr, sizeof(errstr));
                if (rc == -2 && !restore_unreachable(w, t, errstr))
                        return;
                if (rc >= 0)
                        t->unreachable_since_ms = 0;
                if (rc == 1) {
                        rill_restorer_progress(w->env.restorer, NULL, NULL);
                        start_running(w, t);
                        return;
                }
                if (rc == 0) {
                        w->restoring_task = t;
                        return;
                }
        } else {
                int rc = rill_task_restore_step(&w->env, t, RESTORE_SLICE_MS, errstr, sizeof(errstr));
                if (rc == 2)
                        return;
                w->restoring_task = NULL;
                rill_restorer_progress(w->env.restorer, NULL, NULL);
                if (rc == 0) {
                        start_running(w, t);
                        return;
                }
        }
        /* failed: again from its store's offset, up to 3 times */
        rill_log(RILL_LOG_ERROR, "task_open_failed", "thread=%s partition=%d attempt=%d error=\"%s\"",
                 w->name, t->partition, t->restore_started + 1, errstr);
        if (++t->restore_started >= 3)
                rill_app_fail(w->app, "cannot open task %s [%d]: %s", t->topic, t->partition, errstr);
        else
                t->restore_after_ms = rill_now_mono_ms() + (1000LL << t->restore_started);
}

/* @returns 1 when a task waits for restore_some to begin its restore. */
static int restore_due(rill_worker_t *w, int64_t now) {
        if (!w->starting)
                return 0;
        FOREACH_TASK(w, t) {
                if (t->stage == RILL_STAGE_RESTORE && now >= t->restore_after_ms)
                        return 1;
        }
        return 0;
}

/* Bring new tasks to running: positions first, then restores. */
static void start_tasks(rill_worker_t *w) {
        if (!w->starting)
                return;
        load_positions(w);
        FOREACH_TASK(w, t) {
                if (t->stage == RILL_STAGE_REWIND)
                        start_running(w, t);
        }
        restore_some(w);
}

static void close_tasks(rill_worker_t *w, rd_kafka_topic_partition_list_t *parts) {
        for (int i = 0; i < parts->cnt; i++) {
                rill_task_t **slot = task_slot(w, parts->elems[i].topic, parts->elems[i].partition);
                if (!slot || !*slot)
                        continue;
                rill_task_t *t = *slot;
                rill_log(RILL_LOG_INFO, "task_closed", "thread=%s topic=%s partition=%d running=%d",
                         w->name, parts->elems[i].topic, parts->elems[i].partition,
                         t->stage == RILL_STAGE_RUNNING);
                if (t == w->restoring_task) {
                        rill_task_restore_abandon(&w->env, t);
                        rill_restorer_progress(w->env.restorer, NULL, NULL);
                        w->restoring_task = NULL;
                }
                if (t->stage != RILL_STAGE_RUNNING)
                        w->starting--;
                int mslot = metric_slot(w, t->kind, parts->elems[i].partition);
                if (mslot >= 0) {
                        atomic_store(&w->m->owned[mslot], 0);
                        atomic_store(&w->m->lag[mslot], 0);
                        atomic_store(&w->m->restoring[mslot], 0);
                }
                pthread_mutex_lock(&w->tasks_lock);
                rill_task_close(t);
                *slot = NULL;
                pthread_mutex_unlock(&w->tasks_lock);
        }
}

static rd_kafka_error_t *seek_to(rill_worker_t *w, rd_kafka_topic_partition_list_t *seek);
static void wait_for_rewind(rill_worker_t *w, rd_kafka_topic_partition_list_t *seek);

/* Before a rebalance callback is served, librdkafka pauses every assigned
 * partition (cgrp thread) and, on the incremental (un)assign that the
 * callback makes, resumes them from the *application offset* it saved at the
 * pause: the offset after the last message popped. librdkafka 2.0.2's batch
 * consume (rd_kafka_consume_batch_queue) advances that offset for every
 * message it pops, and a pause's version barrier popped later in the same
 * call then drops those messages from the batch (fixed in 2.1.0, #4208): the
 * task never sees them and the resumed fetch starts after them -- a silent
 * skip of up to a batch of one partition. So every running task's fetch is
 * sought back to its own position here, after the pause and before the
 * resume (the seek is ordered after the pause on the partition's queue and
 * resets the application offset). @locality rebalance_cb. */
static void seek_running_to_positions(rill_worker_t *w, const char *why) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
        FOREACH_TASK(w, t) {
                if (t->stage != RILL_STAGE_RUNNING || t->next_offset < 0)
                        continue;
                rd_kafka_topic_partition_list_add(l, t->topic, t->partition)->offset = t->next_offset;
                t->eof_offset = -1; /* reported again after the seek */
        }
        if (l->cnt) {
                rd_kafka_error_t *e = seek_to(w, l);
                rill_log(e ? RILL_LOG_WARN : RILL_LOG_INFO, "positions_resought",
                         "thread=%s reason=%s partitions=%d error=\"%s\"", w->name, why, l->cnt,
                         e ? rd_kafka_error_string(e) : "");
                if (e) {
                        rd_kafka_error_destroy(e);
                        wait_for_rewind(w, l);
                }
        }
        rd_kafka_topic_partition_list_destroy(l);
}

/* The rebalance callback only assigns (incrementally) and pauses what is
 * new: loading positions and restoring stores happen in the thread's loop
 * (start_tasks), between polls, as Kafka Streams' changelog reader does.
 * A revocation commits what the revoked tasks did (or aborts it when the
 * assignment was lost) and closes them; a task revoked mid-restore
 * abandons its restore. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
        rill_worker_t *w = opaque;
        rill_fault("in_rebalance");
        w->in_rebalance = 1;
        w->rebalances++;
        rd_kafka_error_t *e = NULL;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                rill_log(RILL_LOG_INFO, "partitions_assigned", "thread=%s count=%d", w->name,
                         parts->cnt);
                rd_kafka_topic_partition_list_t *paused = rd_kafka_topic_partition_list_new(4);
                assign_tasks(w, parts, paused);
                seek_running_to_positions(w, "assignment");
                e = rd_kafka_incremental_assign(rk, parts);
                if (e)
                        close_tasks(w, paused); /* not ours after all */
                else if (paused->cnt)
                        rd_kafka_pause_partitions(rk, paused);
                rd_kafka_topic_partition_list_destroy(paused);
                atomic_store(&w->m->joined, 1);
        } else {
                int lost = rd_kafka_assignment_lost(rk);
                rill_log(RILL_LOG_INFO, "partitions_revoked", "thread=%s count=%d lost=%d",
                         w->name, parts->cnt, lost);
                if (lost)
                        abort_all(w, "assignment lost");
                else if (commit_all(w, "revocation"))
                        rill_log(RILL_LOG_WARN, "revocation_commit_failed",
                                 "thread=%s the new owner replays from the last commit", w->name);
                close_tasks(w, parts);
                seek_running_to_positions(w, lost ? "lost" : "revocation");
                e = rd_kafka_incremental_unassign(rk, parts);
        }
        if (e) {
                rill_log(RILL_LOG_ERROR, "rebalance_failed", "thread=%s error=\"%s\"", w->name,
                         rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        }
        w->in_rebalance = 0;
}

/* ---- clients ---------------------------------------------------------------------------- */

static void put_kafka(const char *key, const char *value, void *opaque) {
        char err[256];
        if (rd_kafka_conf_set(opaque, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK)
                rill_log(RILL_LOG_WARN, "kafka_config_ignored", "key=%s error=\"%s\"", key, err);
}

/* librdkafka's own log lines go through the structured logger. CONFWARN
 * ("a consumer property set on a producer") is expected: kafka.* properties
 * go to every client, so it is only debug here.
 * @locality any librdkafka thread. */
static rd_kafka_conf_t *base_conf(rill_app_t *app) {
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        char err[256];
        rd_kafka_conf_set_log_cb(c, rill_kafka_log_cb);
        rd_kafka_conf_set(c, "bootstrap.servers", app->bootstrap, err, sizeof(err));
        rd_kafka_conf_set(c, "log.connection.close", "false", err, sizeof(err));
        rill_conf_foreach_kafka(app->conf, put_kafka, c);
        return c;
}

/* Set a librdkafka property unless the user set it (kafka.<name> / -X). */
static void default_kafka(rill_app_t *app, rd_kafka_conf_t *c, const char *name,
                          const char *value) {
        char key[128], err[256];
        snprintf(key, sizeof(key), "kafka.%s", name);
        if (!rill_conf_get(app->conf, key) &&
            rd_kafka_conf_set(c, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK)
                rill_log(RILL_LOG_WARN, "kafka_config_ignored", "key=%s error=\"%s\"", name, err);
}

static int set_all(rd_kafka_conf_t *c, const char *const *kv, char *errstr, size_t errstr_size) {
        char err[256];
        for (int i = 0; kv[i]; i += 2)
                if (rd_kafka_conf_set(c, kv[i], kv[i + 1], err, sizeof(err))) {
                        snprintf(errstr, errstr_size, "kafka config %s: %s", kv[i], err);
                        return -1;
                }
        return 0;
}

/* The thread's transactional producer and its topic handles: stable
 * transactional id per process and thread, so a restarted worker fences its
 * previous incarnation at once. Made at start and again by
 * recover_producer. @returns 0 or -1 (errstr). */
static int make_producer(rill_worker_t *w, char *errstr, size_t errstr_size) {
        rill_app_t *app = w->app;
        char ttl[32], err[512];
        snprintf(ttl, sizeof(ttl), "%lld", (long long)w->coll.txn_timeout_ms);
        rd_kafka_conf_t *pc = base_conf(app);
        const char *pkv[] = {"transactional.id", w->txn_id,
                             "client.id", w->client_id,
                             "enable.idempotence", "true",
                             "transaction.timeout.ms", ttl,
                             NULL};
        if (set_all(pc, pkv, errstr, errstr_size)) {
                rd_kafka_conf_destroy(pc);
                return -1;
        }
        /* Right after a commit the coordinator is still writing markers and
         * answers the next transaction's AddPartitionsToTxn with
         * CONCURRENT_TRANSACTIONS; librdkafka retries after retry.backoff.ms
         * (100 ms by default). 10 ms cut the mean commit cycle from 42 to
         * 17 ms here. Overridable with -X retry.backoff.ms=. */
        default_kafka(app, pc, "retry.backoff.ms", "10");
        /* 5 ms unless set with -X linger.ms (before, 5 was forced over the
         * user's value). Lingering up to the commit interval saved 8 % of the
         * CPU at 2,000 events/s, but librdkafka 2.0.2 sends a partition's
         * batch early only when the batch is full, never because the queue
         * is: with a small memory.limit.mb a full queue then waited out the
         * linger (0.33x throughput at a 1 s interval; flushing the full queue
         * instead still cost 0.85x). See performance.md, section 7. */
        default_kafka(app, pc, "linger.ms", "5");
        /* queue bounds within memory.limit.mb's share (engine/memory.h) */
        rill_memplan_t mp;
        char merr[256];
        if (rill_memplan(rill_conf_get_int(app->conf, "memory.limit.mb"), app->partitions,
                         app->nthreads, &mp, merr, sizeof(merr)) == 0)
                for (const rill_kafka_default_t *d = mp.producer; d->key; d++)
                        default_kafka(app, pc, d->key, d->value);
        rd_kafka_conf_set_dr_msg_cb(pc, rill_collector_dr_cb);
        rd_kafka_conf_set_opaque(pc, &w->coll);
        w->coll.producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
        if (!w->coll.producer) {
                snprintf(errstr, errstr_size, "cannot create producer: %s", err);
                rd_kafka_conf_destroy(pc);
                return -1;
        }
        const char *out_names[RILL_OUT_N] = {app->repartition_topic, app->changelog_topic,
                                             app->output_topic, app->dlq_topic};
        for (int i = 0; i < RILL_OUT_N; i++) {
                w->coll.out[i] = rd_kafka_topic_new(w->coll.producer, out_names[i], NULL);
                if (!w->coll.out[i]) {
                        snprintf(errstr, errstr_size, "cannot create topic handle %s: %s",
                                 out_names[i], rd_kafka_err2str(rd_kafka_last_error()));
                        return -1;
                }
        }
        return 0;
}

rill_worker_t *rill_worker_new(rill_app_t *app, int index, char *errstr, size_t errstr_size) {
        rill_worker_t *w = calloc(1, sizeof(*w));
        w->app = app;
        w->index = index;
        w->m = &app->metrics[index];
        if (rill_collector_init(&w->coll, app->partitions,
                                rill_conf_get_int(app->conf, "transaction.timeout.ms"), w->m)) {
                snprintf(errstr, errstr_size, "out of memory for stream thread %d", index);
                free(w);
                return NULL;
        }
        w->env = (rill_task_env_t){app, &w->coll, NULL, NULL, 0, 0};
        pthread_mutex_init(&w->tasks_lock, NULL);
        snprintf(w->name, sizeof(w->name), "%s-%d", app->process_id, index);
        w->src_slots = atomic_load(&app->sources);
        w->src = calloc((size_t)w->src_slots, sizeof(*w->src));
        w->agg = calloc((size_t)app->partitions, sizeof(*w->agg));
        char instance[400], err[512];
        char *client_id = w->client_id;
        snprintf(w->txn_id, sizeof(w->txn_id), "%s-%s", app->app_id, w->name);
        rill_owners_client_id(app, w->name, w->client_id, sizeof(w->client_id)); /* + HTTP endpoint */

        /* consumer: one per thread, in the application's group */
        rd_kafka_conf_t *cc = base_conf(app);
        const char *ckv[] = {"group.id", app->app_id,
                             "client.id", client_id,
                             "enable.auto.commit", "false",
                             "enable.auto.offset.store", "false",
                             "isolation.level", "read_committed",
                             "auto.offset.reset", "earliest",
                             "enable.partition.eof", "true", /* see task_caught_up */
                             NULL};
        if (set_all(cc, ckv, errstr, errstr_size))
                goto fail_cc;
        /* KIP-848 (-X group.protocol=consumer, librdkafka >= 2.12): the broker
         * assigns, and librdkafka refuses a client-side assignment strategy */
        const char *proto = rill_conf_get(app->conf, "kafka.group.protocol");
        if (!proto || strcmp(proto, "consumer")) {
                const char *akv[] = {"partition.assignment.strategy", "cooperative-sticky", NULL};
                if (set_all(cc, akv, errstr, errstr_size))
                        goto fail_cc;
        }
        const char *gi = rill_conf_get(app->conf, "group.instance.id");
        if (gi && *gi) {
                snprintf(instance, sizeof(instance), "%s-%d", gi, index);
                const char *gkv[] = {"group.instance.id", instance, NULL};
                if (set_all(cc, gkv, errstr, errstr_size))
                        goto fail_cc;
        }
        /* librdkafka 2.0.2 counts queued.min.messages against the whole
         * consumer queue (every partition is forwarded to it) and, once it is
         * exceeded, stops fetching every partition for about a second -- the
         * repartition topic included. At 100,000 messages (the default) the
         * queue drained in well under that second: the thread idled for
         * ~0.5 s out of every 1.5 s (measured: 4.5 of 8.7 s waiting in poll).
         * A queued message costs ~350 bytes of memory, so the bound is a
         * trade: measured on 1M events, 2 threads (wall s / peak RSS MB):
         * 100k 5.8/220, 150k 4.9-5.7/200-215, 200k 3.8/240-270, 300k
         * 2.9-3.0/305-320, unbounded with 32 MB 2.8-3.2/400-440. That was
         * before nudge_fetchers, which wakes the fetchers once the queue has
         * drained: 100k with it matched 300k without it, at half the peak
         * RSS (docs/performance.md section 13). 100k it is; smaller fetches
         * per partition (256 KB) overshoot the bound less.
         * Both at most, within memory.limit.mb's share (engine/memory.h).
         * All overridable with -X. */
        rill_memplan_t mp;
        if (rill_memplan(rill_conf_get_int(app->conf, "memory.limit.mb"), app->partitions,
                         app->nthreads, &mp, errstr, errstr_size))
                goto fail_cc;
        for (const rill_kafka_default_t *d = mp.consumer; d->key; d++)
                default_kafka(app, cc, d->key, d->value);
        /* partitions added to the input are seen (and assigned) within 5 s,
         * not librdkafka's 5 minutes: see check_sources */
        default_kafka(app, cc, "topic.metadata.refresh.interval.ms", "5000");
        rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
        rd_kafka_conf_set_opaque(cc, w);
        w->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
        if (!w->consumer) {
                snprintf(errstr, errstr_size, "cannot create consumer: %s", err);
                goto fail_cc;
        }
        rd_kafka_poll_set_consumer(w->consumer);
        w->queue = rd_kafka_queue_get_consumer(w->consumer);
        w->input_rkt = rd_kafka_topic_new(w->consumer, app->input_topic, NULL);

        if (make_producer(w, errstr, errstr_size))
                goto fail;
        rd_kafka_conf_t *rc = base_conf(app);
        /* The same fetch stall, for changelog restores: they consume ~1M
         * records/s per thread, so a count bound that outlasts the pause
         * would be large; bound by bytes (32 MB at most) and by
         * memory.limit.mb's share (engine/memory.h). */
        for (const rill_kafka_default_t *d = mp.restorer; d->key; d++)
                default_kafka(app, rc, d->key, d->value);
        /* it also reads the log start and end of input partitions (the idle
         * rule): one added while running must be known to it within 5 s */
        default_kafka(app, rc, "topic.metadata.refresh.interval.ms", "5000");
        w->env.restorer = rill_restorer_new(rc,
                                        rill_conf_get_int(app->conf, "restore.batch.records"),
                                        errstr, errstr_size);
        if (!w->env.restorer)
                goto fail;
        if (app->pgspec.dsn && *app->pgspec.dsn) {
                w->env.pg = rill_pgsink_connect(&app->pgspec, errstr, errstr_size);
                if (!w->env.pg)
                        goto fail;
        }
        return w;
fail_cc:
        rd_kafka_conf_destroy(cc);
fail:
        rill_worker_destroy(w);
        return NULL;
}

/* Close the consumer within the shutdown deadline (less a second for the
 * teardown after it). rd_kafka_consumer_close() waits without a bound for
 * the group to be left, which takes up to session.timeout.ms (45 s by
 * default) when the coordinator does not answer; the queue form lets this
 * thread serve the revoke callback (which closes the tasks) with its own
 * bounded polls and give up at the deadline. A static member (group.instance.id) does not leave: its
 * partitions wait for it for session.timeout.ms. */
static void close_consumer(rill_worker_t *w) {
        int64_t t0 = rill_now_mono_ms();
        rd_kafka_queue_t *q = rd_kafka_queue_new(w->consumer);
        rd_kafka_error_t *e = rd_kafka_consumer_close_queue(w->consumer, q);
        if (e) {
                rill_log(RILL_LOG_WARN, "consumer_close_failed", "thread=%s error=\"%s\"", w->name,
                         rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        } else {
                while (!rd_kafka_consumer_closed(w->consumer)) {
                        int64_t left = rill_app_shutdown_left_ms(w->app) - 1000;
                        if (left <= 0) {
                                rill_log(RILL_LOG_WARN, "consumer_close_abandoned",
                                         "thread=%s waited_ms=%lld reason=shutdown_deadline "
                                         "detail=\"the group coordinator did not answer; the "
                                         "group drops this member after session.timeout.ms\"",
                                         w->name, (long long)(rill_now_mono_ms() - t0));
                                break;
                        }
                        /* the close forwards the consumer's queue to q: this
                         * poll serves it, the revoke callback included; a
                         * message fetched before the revocation is not
                         * processed (the next owner starts at the commit) */
                        rd_kafka_message_t *m =
                            rd_kafka_consumer_poll(w->consumer, left < 100 ? (int)left : 100);
                        if (m)
                                rd_kafka_message_destroy(m);
                }
        }
        rd_kafka_queue_destroy(q);
}

/* Destroy the Kafka clients (not their close again: the close above was
 * given all the time there was). Everything is purged: the transaction, if
 * one is still open, is left to the coordinator and the next owner. Even so
 * rd_kafka_destroy() of the consumer joins librdkafka's main thread, which
 * waits for the group handler to terminate, i.e. for the requests in flight
 * to a silent coordinator to time out (socket.timeout.ms, 60 s; seen with
 * gdb): only the application thread's deadline bounds that. */
static void destroy_clients(rill_worker_t *w) {
        if (w->queue)
                rd_kafka_queue_destroy(w->queue);
        w->queue = NULL;
        if (w->input_rkt)
                rd_kafka_topic_destroy(w->input_rkt);
        w->input_rkt = NULL;
        rd_kafka_destroy_flags(w->consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        w->consumer = NULL;
        for (int i = 0; i < RILL_OUT_N; i++)
                if (w->coll.out[i])
                        rd_kafka_topic_destroy(w->coll.out[i]);
        memset(w->coll.out, 0, sizeof(w->coll.out));
        if (w->coll.producer) {
                rd_kafka_purge(w->coll.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_destroy(w->coll.producer);
        }
        w->coll.producer = NULL;
        rill_restorer_destroy(w->env.restorer);
        w->env.restorer = NULL;
}

void rill_worker_destroy(rill_worker_t *w) {
        if (!w)
                return;
        if (w->src && w->agg)
                FOREACH_TASK(w, t) rill_task_close(t);
        free(w->src);
        free(w->agg);
        if (w->queue)
                rd_kafka_queue_destroy(w->queue);
        if (w->input_rkt)
                rd_kafka_topic_destroy(w->input_rkt);
        if (w->consumer) /* closed by the thread's tail, or never subscribed */
                rd_kafka_destroy_flags(w->consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        for (int i = 0; i < RILL_OUT_N; i++)
                if (w->coll.out[i])
                        rd_kafka_topic_destroy(w->coll.out[i]);
        if (w->coll.producer)
                rd_kafka_destroy(w->coll.producer);
        rill_restorer_destroy(w->env.restorer);
        rill_pgsink_destroy(w->env.pg);
        pthread_mutex_destroy(&w->tasks_lock);
        rill_collector_free(&w->coll);
        free(w);
}

/* ---- the thread ---------------------------------------------------------------------------- */

/* Partitions added to the input while running (unkeyed input): each is a
 * new source that every aggregation task must wait for before its stream
 * time passes the new partition's records. The count is read from the
 * broker every SOURCES_CHECK_MS and announced by every source task in its
 * next watermark records (task.c, publish_progress), so an aggregation task
 * learns it from its input, in order: a replay learns it at the same
 * record. Records written to a new partition before the announcement
 * reached the aggregation tasks (at most this interval plus a commit, or
 * the consumer's metadata refresh) are late only if their window closed
 * meanwhile: within the default 10 s grace, none are. */
static void check_sources(rill_worker_t *w) {
        int64_t now = rill_now_mono_ms();
        if (now - w->sources_checked_ms < SOURCES_CHECK_MS || !w->input_rkt)
                return;
        w->sources_checked_ms = now;
        int64_t left = rill_collector_left_ms(&w->coll);
        int bound = left < SOURCES_CALL_MS ? (int)left : SOURCES_CALL_MS;
        if (bound <= 0)
                return;
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(w->consumer, 0, w->input_rkt, &md, bound) || !md)
                return; /* tried again after the interval */
        int n = md->topic_cnt == 1 && !md->topics[0].err ? md->topics[0].partition_cnt : 0;
        rd_kafka_metadata_destroy(md);
        int old = atomic_load(&w->app->sources);
        while (n > old && !atomic_compare_exchange_weak(&w->app->sources, &old, n))
                ;
        if (n > old)
                rill_log(w->app->keyed ? RILL_LOG_ERROR : RILL_LOG_WARN, "input_partitions_added",
                         "thread=%s topic=%s from=%d to=%d action=%s", w->name,
                         w->app->input_topic, old, n,
                         w->app->keyed ? "not_consumed_with_keyed_input"
                                       : "announced_to_every_aggregation_task");
}

/* @returns 0, or -1: fatal, stopping, or still failing at deadline_ms
 * (mono; 0 = only the stop flag bounds it: the thread's start). */
static int init_transactions(rill_worker_t *w, int64_t deadline_ms) {
        for (int attempt = 0; !atomic_load(&w->app->stop); attempt++) {
                if (deadline_ms && rill_now_mono_ms() >= deadline_ms)
                        return -1;
                rd_kafka_error_t *e = rd_kafka_init_transactions(w->coll.producer, (int)w->coll.txn_timeout_ms);
                if (!e)
                        return 0;
                rill_log(RILL_LOG_WARN, "init_transactions_failed",
                         "thread=%s attempt=%d error=\"%s\"", w->name, attempt + 1,
                         rd_kafka_error_string(e));
                int fatal = rd_kafka_error_is_fatal(e);
                rd_kafka_error_destroy(e);
                if (fatal)
                        return -1;
                sleep_ms(w, 1000);
        }
        return -1;
}

/* Learn the partitions of every output topic now. Otherwise the producer
 * asks for a topic's metadata only once the first record for it is queued,
 * and that answer arrived ~0.9 s later here, inside the first commit's flush
 * (measured). A failure is not fatal: the producer still asks on demand. */
static void warm_metadata(rill_worker_t *w) {
        for (int i = 0; i < RILL_OUT_N; i++) {
                if (i == RILL_OUT_REPARTITION && w->app->keyed)
                        continue;
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t err = rd_kafka_metadata(w->coll.producer, 0, w->coll.out[i], &md, 5000);
                if (err)
                        rill_log(RILL_LOG_WARN, "metadata_warmup_failed", "thread=%s topic=%s error=\"%s\"",
                                 w->name, rd_kafka_topic_name(w->coll.out[i]), rd_kafka_err2str(err));
                if (md)
                        rd_kafka_metadata_destroy(md);
        }
        char errstr[512];
        if (rill_restorer_warm(w->env.restorer, w->app->changelog_topic, 5000, errstr, sizeof(errstr)))
                rill_log(RILL_LOG_WARN, "metadata_warmup_failed", "thread=%s restorer error=\"%s\"",
                         w->name, errstr);
}

/* One consumed message. @returns 1 when processing failed (errstr). */
static int handle_message(rill_worker_t *w, rd_kafka_message_t *m, char *errstr,
                          size_t errstr_size) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* the fetch position at the end of the partition: the idle
                 * rule's proof of being caught up */
                rill_task_t **slot = task_slot(w, rd_kafka_topic_name(m->rkt), m->partition);
                if (slot && *slot)
                        (*slot)->eof_offset = m->offset;
                return 0;
        }
        if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                /* the consumer is unusable (librdkafka raises this for static
                 * membership: FENCED_INSTANCE_ID when another member joined
                 * with our group.instance.id, UNRELEASED_INSTANCE_ID on
                 * KIP-848's protocol when the old member of that id is still
                 * in the group). Polling on would keep the thread alive and
                 * consuming nothing, and its producer (the same
                 * transactional id as the other's) fencing the other in
                 * turn: the process stops, so that a supervisor sees it; the
                 * tasks' uncommitted work is aborted, nothing is lost. */
                char reason[512];
                rd_kafka_resp_err_t orig = rd_kafka_fatal_error(w->consumer, reason, sizeof(reason));
                int dup = orig == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID ||
                          (int)orig == KAFKA_ERR_UNRELEASED_INSTANCE_ID;
                rill_app_fail(w->app, "thread %s: the consumer cannot go on: %s: %s%s", w->name,
                              rd_kafka_err2name(orig), reason,
                              dup ? " (hint: another worker uses the same --group-instance-id: give each "
                                    "worker its own; after a crash, a worker restarted with its id "
                                    "before the group's session timeout may be refused once: restart "
                                    "it again)"
                                  : "");
                w->fatal = 1;
                return 0;
        }
        if (m->err) {
                rill_log(RILL_LOG_WARN, "consumer_error", "thread=%s error=\"%s\"", w->name,
                         rd_kafka_message_errstr(m));
                return 0;
        }
        /* A message of a partition with no task here was fetched before its
         * revocation: it is not ours to process or commit; the new owner
         * starts from the committed offset and processes it. */
        rill_task_t **slot = task_slot(w, rd_kafka_topic_name(m->rkt), m->partition);
        if (!slot || !*slot)
                return 0;
        rill_task_t *t = *slot;
        if (t->stage != RILL_STAGE_RUNNING) {
                /* fetched before its pause took effect: fetched again when
                 * the task runs */
                if (t->refetch_from < 0 || m->offset < t->refetch_from)
                        t->refetch_from = m->offset;
                return 0;
        }
        if (t->next_offset >= 0 && m->offset < t->next_offset) {
                /* already in the task's state (processed, or committed by
                 * the owner it was restored from): never counted twice */
                if (!w->redelivered++ || !(w->redelivered % 10000))
                        rill_log(RILL_LOG_WARN, "record_before_position_skipped",
                                 "thread=%s topic=%s partition=%d offset=%lld position=%lld "
                                 "skipped=%lld",
                                 w->name, t->topic, t->partition, (long long)m->offset,
                                 (long long)t->next_offset, (long long)w->redelivered);
                return 0;
        }
        atomic_fetch_add(&w->m->processed, 1);
        return rill_task_process(&w->env, t, m, errstr, errstr_size) ? 1 : 0;
}

/* Messages popped but not to be processed: a batch during which a
 * rebalance callback ran (the messages popped before the callback escaped
 * librdkafka's version barrier, so none of the batch is trusted: a
 * revocation commits or aborts and rewinds the running tasks, and their
 * records popped before it would be processed out of order), or the rest of
 * a batch after a record failed. Every running task that had a message
 * among them is sought back to its own position (the next offset of what it
 * processed), and its records are fetched again. A seek that fails is handled as any
 * failed rewind: the transaction is aborted and those tasks wait, paused,
 * for the loop to seek them (RILL_STAGE_REWIND). */
static void refetch_batch(rill_worker_t *w, rd_kafka_message_t **msgs, ssize_t n) {
        rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(8);
        for (ssize_t i = 0; i < n; i++) {
                rd_kafka_message_t *m = msgs[i];
                rill_task_t **slot =
                    m->rkt ? task_slot(w, rd_kafka_topic_name(m->rkt), m->partition) : NULL;
                rill_task_t *t = slot ? *slot : NULL;
                int eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
                if (eof && t)
                        t->eof_offset = -1; /* seen again after its seek or resume */
                if (!m->err && t && t->stage != RILL_STAGE_RUNNING &&
                    (t->refetch_from < 0 || m->offset < t->refetch_from))
                        t->refetch_from = m->offset;
                /* a running task with a record or an end of partition here is
                 * sought: a seek changes the fetch version, after which
                 * librdkafka reports the end again (an idle partition would
                 * otherwise never be called caught up again) */
                if ((!m->err || eof) && t && t->stage == RILL_STAGE_RUNNING) {
                        int64_t to = t->next_offset >= 0 ? t->next_offset : m->offset;
                        rd_kafka_topic_partition_t *e =
                            rd_kafka_topic_partition_list_find(seek, t->topic, t->partition);
                        if (!e)
                                rd_kafka_topic_partition_list_add(seek, t->topic, t->partition)
                                    ->offset = to;
                        else if (to < e->offset)
                                e->offset = to;
                        t->eof_offset = -1;
                }
                rd_kafka_message_destroy(m);
        }
        if (seek->cnt) {
                rd_kafka_error_t *e = seek_to(w, seek);
                rill_log(e ? RILL_LOG_WARN : RILL_LOG_INFO, "batch_refetched",
                         "thread=%s records=%zd partitions=%d error=\"%s\"", w->name, n,
                         seek->cnt, e ? rd_kafka_error_string(e) : "");
                if (e) {
                        rd_kafka_error_destroy(e);
                        wait_for_rewind(w, seek);
                }
        }
        rd_kafka_topic_partition_list_destroy(seek);
}

/* Seek the partitions of seek (running tasks, each at its own position).
 * @returns NULL, or the error of the seek or of its first partition. */
static rd_kafka_error_t *seek_to(rill_worker_t *w, rd_kafka_topic_partition_list_t *seek) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(w->consumer, seek, 10000);
        for (int i = 0; !e && i < seek->cnt; i++)
                if (seek->elems[i].err)
                        e = rd_kafka_error_new(seek->elems[i].err, "%s [%d]: %s",
                                               seek->elems[i].topic, seek->elems[i].partition,
                                               rd_kafka_err2str(seek->elems[i].err));
        return e;
}

/* A seek to the tasks' positions failed: handled as any failed rewind. The
 * transaction is aborted and those tasks wait, paused, for the loop to seek
 * them (RILL_STAGE_REWIND). */
static void wait_for_rewind(rill_worker_t *w, rd_kafka_topic_partition_list_t *seek) {
        abort_all(w, "a seek to the tasks' positions failed");
        /* no uncommitted state is left: the tasks wait, paused */
        rd_kafka_pause_partitions(w->consumer, seek);
        for (int i = 0; i < seek->cnt; i++) {
                rill_task_t **slot = task_slot(w, seek->elems[i].topic, seek->elems[i].partition);
                rill_task_t *t = slot ? *slot : NULL;
                if (!t || t->stage != RILL_STAGE_RUNNING)
                        continue; /* closed, or already waiting (abort_all) */
                t->refetch_from = t->next_offset >= 0 ? t->next_offset : seek->elems[i].offset;
                pthread_mutex_lock(&w->tasks_lock);
                t->stage = RILL_STAGE_REWIND;
                pthread_mutex_unlock(&w->tasks_lock);
                t->assigned_ms = rill_now_mono_ms();
                w->starting++;
        }
}

/* 1 when a batch holds a record of a running task (the fail point
 * batch_refetch counts only those batches). */
static int running_record(rill_worker_t *w, rd_kafka_message_t **msgs, ssize_t n) {
        for (ssize_t i = 0; i < n; i++) {
                if (msgs[i]->err || !msgs[i]->rkt)
                        continue;
                rill_task_t **slot =
                    task_slot(w, rd_kafka_topic_name(msgs[i]->rkt), msgs[i]->partition);
                if (slot && *slot && (*slot)->stage == RILL_STAGE_RUNNING)
                        return 1;
        }
        return 0;
}

/* librdkafka 2.0.2 stops fetching every partition of the consumer once its
 * queue holds queued.min.messages (or queued.max.messages.kbytes), and each
 * broker thread then sleeps until an op arrives or the next second: nothing
 * wakes it when the application drains the queue (section 1 of
 * docs/performance.md; fetch.queue.backoff.ms came in 2.2.0). When the queue
 * runs empty after a stretch of at least NUDGE_AFTER messages (it may have
 * been full), a ListOffsets request to every leader of the assignment (its
 * answer unused) is such an op: each broker thread wakes, decides again and
 * fetches. A pause or resume would wake them too, but bumps the partitions'
 * op versions, which purges what is queued. The call sends the requests
 * and waits at most RILL_KAFKA_NUDGE_TIMEOUT_MS for their answers, so a
 * slow or unreachable leader costs the thread 5 ms, not a round trip;
 * never at a low rate (the queue is found empty every few
 * messages there, which resets the count). @locality the stream thread. */
static void nudge_fetchers(rill_worker_t *w) {
        rd_kafka_topic_partition_list_t *parts = NULL;
        if (rd_kafka_assignment(w->consumer, &parts) || !parts)
                return;
        /* the latest: any answer will do */
        (void)rill_kafka_list_offsets(w->consumer, parts, -1, RILL_KAFKA_NUDGE_TIMEOUT_MS);
        rd_kafka_topic_partition_list_destroy(parts);
        w->nudges++;
}

/* Consume what is queued, up to BATCH_MAX messages in one call (one queue
 * lock, not one per message); when nothing is queued, wait up to wait_ms
 * for one message with a single poll (it returns as soon as one arrives,
 * and runs callbacks only before popping it). @returns 1 when processing a
 * message failed (errstr): the rest of its batch is not processed but
 * fetched again. */
static int consume(rill_worker_t *w, int wait_ms, char *errstr, size_t errstr_size) {
        rd_kafka_message_t *msgs[BATCH_MAX];
        int64_t t0 = rill_now_mono_ms();
        unsigned seen = w->rebalances;
        ssize_t n = rd_kafka_consume_batch_queue(w->queue, 0, msgs, BATCH_MAX);
        int64_t t1 = rill_now_mono_ms();
        /* fail point batch_refetch (tests): the n-th batch holding a running
         * task's record is handled as one during which a rebalance callback
         * ran */
        if (n > 0 && (w->rebalances != seen ||
                      (running_record(w, msgs, n) && rill_fault_fail("batch_refetch")))) {
                refetch_batch(w, msgs, n);
                n = 0;
        } else if (n <= 0) {
                /* the queue ran empty: after a long stretch (it may have
                 * been full) the fetchers may be asleep */
                if (w->since_empty >= NUDGE_AFTER)
                        nudge_fetchers(w);
                w->since_empty = 0;
                rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, wait_ms);
                t1 = rill_now_mono_ms();
                if (m) {
                        msgs[0] = m;
                        n = 1;
                }
        }
        if (n > 0)
                w->since_empty += n;
        w->poll_ms += t1 - t0; /* the polls and a nudge, not a refetch's seek */
        w->env.batch_mono_ms = rill_now_mono_ms();
        w->env.batch_wall_ms = rill_now_wall_ms();
        if (n <= 0) {
                w->empty_polls++;
                return 0;
        }
        for (ssize_t i = 0; i < n; i++) {
                int failed = handle_message(w, msgs[i], errstr, errstr_size);
                rd_kafka_message_destroy(msgs[i]);
                if (failed) {
                        /* the abort that follows rewinds only the tasks with
                         * uncommitted records: the others' records left in
                         * this batch are fetched again from here */
                        refetch_batch(w, msgs + i + 1, n - i - 1);
                        return 1;
                }
        }
        return 0;
}

static void run_loop(rill_worker_t *w) {
        char errstr[512];
        while (!atomic_load(&w->app->stop) && !w->fatal) {
                /* an abort outside a failed cycle (a lost assignment, in the
                 * rebalance callback) may have left the producer unusable */
                if (w->coll.txn_fatal && !w->coll.txn_open && recover_producer(w, "the last abort did not end"))
                        return;
                int64_t now = rill_now_mono_ms();
                int64_t wait = w->last_commit_ms + w->app->commit_ms - now;
                /* a restore in progress or due is not kept waiting by the
                 * poll (up to 100 ms between two tasks' restores, before);
                 * restores run only with no transaction open (start_tasks) */
                int64_t cap = !w->coll.txn_open && (w->restoring_task || restore_due(w, now)) ? 1 : 100;
                int failed = consume(w, (int)(wait < 1 ? 1 : wait > cap ? cap : wait), errstr,
                                     sizeof(errstr));
                if (failed) {
                        rill_log(RILL_LOG_ERROR, "process_failed", "thread=%s error=\"%s\"",
                                 w->name, errstr);
                        int r = fail_or_recover(w, errstr);
                        if (r < 0)
                                return;
                        if (r == 0)
                                sleep_ms(w, 1000);
                        continue;
                }
                check_sources(w);
                now = rill_now_mono_ms();
                int advanced = 0;
                FOREACH_TASK(w, t) {
                        if (t->stage == RILL_STAGE_RUNNING && rill_task_idle_due(&w->env, t, now))
                                advanced |= rill_task_idle_advance(&w->env, t, now, task_caught_up(w, t));
                }
                /* an advance commits at once: its watermark then carries the
                 * input offset it was decided at, before any later record */
                /* a window may close and the task is caught up: commit now
                 * rather than at the interval (results reach Kafka and
                 * Postgres sooner; never while a backlog is consumed, where
                 * boundaries pass by the hundred) */
                int close_now = 0;
                FOREACH_TASK(w, t) {
                        if (t->close_due) {
                                t->close_due = 0;
                                close_now |= task_nearly_caught_up(w, t);
                        }
                }
                /* a write cache over its memory budget commits early: only
                 * committed windows can leave memory */
                if (advanced || close_now || now - w->last_commit_ms >= w->app->commit_ms ||
                    rill_wstore_cache_over_budget()) {
                        commit_all(w, "interval");
                        w->commit_total_ms += rill_now_mono_ms() - now;
                }
                /* new tasks' broker calls (committed offsets, end offsets,
                 * seeks: up to 10 s each) and restore slices only while no
                 * transaction is open, right after a commit: none of them can
                 * outlast a transaction's deadline */
                if (!w->coll.txn_open)
                        start_tasks(w);
        }
}

void *rill_worker_main(void *arg) {
        rill_worker_t *w = arg;
        if (init_transactions(w, 0)) {
                if (!atomic_load(&w->app->stop))
                        rill_app_fail(w->app, "thread %s: cannot initialise transactions", w->name);
                return NULL;
        }
        warm_metadata(w);
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(topics, w->app->input_topic, RD_KAFKA_PARTITION_UA);
        if (!w->app->keyed)
                rd_kafka_topic_partition_list_add(topics, w->app->repartition_topic,
                                                  RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t err = rd_kafka_subscribe(w->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err) {
                rill_app_fail(w->app, "thread %s: cannot subscribe: %s", w->name,
                              rd_kafka_err2str(err));
                return NULL;
        }
        rill_log(RILL_LOG_INFO, "thread_started", "thread=%s", w->name);
        w->last_commit_ms = w->started_ms = rill_now_mono_ms();
        atomic_store(&w->m->healthy_mono_ms, w->started_ms);
        run_loop(w);
        /* shutdown: final commit, then leave the group (the revoke callback
         * commits again, which is a no-op, and closes the tasks), then the
         * clients' teardown here, so that the application thread's bounded
         * join (runtime.c) bounds it too */
        rill_app_set_phase(w->app, w->index, RILL_PHASE_FINAL_COMMIT);
        if (!w->fatal)
                commit_all(w, "shutdown");
        else
                abort_all(w, "fatal error");
        rill_app_set_phase(w->app, w->index, RILL_PHASE_CLOSING);
        close_consumer(w);
        rill_app_set_phase(w->app, w->index, RILL_PHASE_DESTROYING);
        destroy_clients(w);
        rill_log(RILL_LOG_INFO, "thread_stopped",
                 "thread=%s run_ms=%lld poll_ms=%lld commit_ms=%lld empty_polls=%lld nudges=%lld", w->name,
                 (long long)(rill_now_mono_ms() - w->started_ms), (long long)w->poll_ms,
                 (long long)w->commit_total_ms, (long long)w->empty_polls, (long long)w->nudges);
        rill_app_set_phase(w->app, w->index, RILL_PHASE_STOPPED);
        return NULL;
}
