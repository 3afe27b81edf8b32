/*
 * task.c -- what a task does with its records, its windows and its store.
 *
 * Two kinds of task (the two sub-topologies of Kafka Streams' key change):
 *   SOURCE  (input partitions, unkeyed input only): extract and validate each
 *           record, send bad ones to the dead-letter topic, and forward good
 *           ones to the repartition topic keyed by the aggregation key.
 *   AGG     (repartition partitions, or input partitions for keyed input):
 *           add each event to its tumbling window in the task's store.
 * Every side effect goes into the worker's open Kafka transaction, so a task
 * never makes anything visible that its input offsets do not commit with.
 *
 * Event time (Flink's watermarks, recorded in the log so a replay decides
 * the same):
 *   - a SOURCE task's progress is the largest event time seen in its input
 *     partition (or its idle advance). A record whose window end + grace is
 *     at or before that progress is late, decided right there: lateness is a
 *     property of the data of its own partition, never of failures, restarts
 *     or of how fast other partitions were consumed. The progress goes to
 *     every repartition partition as a watermark record, in the same
 *     transaction as the data, whenever it moved since the last commit, and
 *     rides with the committed input offset as its metadata (restored on
 *     assignment, as Kafka Streams keeps partition time).
 *   - an AGG task of unkeyed input keeps the last progress of every source
 *     partition (state: it travels in the changelog with the windows). Its
 *     stream time is the minimum over all sources, once every source has
 *     reported: a slow, stalled or restoring source holds windows back
 *     instead of making its records late. For keyed input each partition is
 *     its own only source: stream time is its largest event time.
 * A window closes when stream time >= its end + grace. A record arriving at
 * an aggregation task for a closed window is still dead-lettered as late
 * (for keyed input that is the definition; for unkeyed input it cannot
 * happen once every source reported, and means an unreported source's
 * records came behind the others').
 *
 * @locality every function here runs on the stream thread owning the task.
 */
#include "internal.h"
#include "codec.h"
#include "fault.h"
#include "log.h"
#include "window.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A result's output value is sized from its key: an escaped key byte takes
 * at most 6 bytes (\u00XX), the rest of a record is a few hundred bytes.
 * An application's format that still does not fit gets doubling buffers up
 * to RESULT_MAX; past that the result goes to the dead-letter topic. */
static void note_close_due(const rill_app_t *app, rill_task_t *t, int64_t from, int64_t to);

#define RESULT_FIXED 1024
#define RESULT_MAX (1 << 20)

/* ---- store lifecycle ------------------------------------------------------------ */

/* After a restore, every window that the restored stream time has closed
 * was emitted by whoever closed it, in the transaction that also wrote that
 * stream time. Such a window can only be in the store because its tombstone
 * is gone: a store restored from an old offset after the changelog's
 * compaction removed tombstones (delete.retention.ms), which leaves the
 * stale partial value behind. Emitting it again would overwrite the real
 * result; so it is deleted, without output, directly in RocksDB (at the same
 * changelog offset: a later restore from the start drops it the same way).
 * @returns 0 or -1 (errstr). */
static int drop_closed_windows(rill_task_env_t *env, rill_task_t *t, char *errstr,
                               size_t errstr_size) {
        rill_app_t *app = env->app;
        if (t->stream_time == INT64_MIN)
                return 0;
        /* Only below the bound the task closed windows at (stored with the
         * stream time): with a smaller grace or window now, windows above it
         * were never emitted, and the first flush emits them. A store that
         * knows no bound (written by an older version) drops nothing. */
        int64_t bound = rill_window_close_bound(app->window_ms, app->advance_ms, app->grace_ms,
                                                t->stream_time);
        int64_t closed = rill_wstore_closed_bound(t->store);
        if (closed == INT64_MIN)
                return 0;
        if (closed < bound)
                bound = closed;
        rill_wlist_t stale = {0};
        if (rill_wstore_closed(t->store, bound, &stale, errstr, errstr_size))
                return -1;
        if (!stale.cnt) {
                rill_wlist_free(&stale);
                return 0;
        }
        for (size_t i = 0; i < stale.cnt; i++)
                rill_wstore_delete(t->store, stale.v[i].wstart, stale.v[i].key, stale.v[i].key_len);
        rill_log(RILL_LOG_WARN, "stale_windows_dropped",
                 "partition=%d windows=%zu first_window_start=%lld stream_time=%lld "
                 "reason=closed_before_restore_without_tombstone",
                 t->partition, stale.cnt, (long long)stale.v[0].wstart, (long long)t->stream_time);
        rill_wlist_free(&stale);
        return rill_wstore_apply(t->store, rill_wstore_changelog_offset(t->store), t->stream_time,
                                 errstr, errstr_size);
}

static void store_paths(rill_app_t *app, const rill_task_t *t, char *dir, size_t dir_size,
                        char *identity, size_t identity_size) {
        snprintf(dir, dir_size, "%s/%s/%d", app->state_dir, app->app_id, t->partition);
        snprintf(identity, identity_size, "%s|%s|%d", app->app_id, app->changelog_topic,
                 t->partition);
}

static int store_ready(rill_task_env_t *env, rill_task_t *t, char *errstr, size_t errstr_size);

int rill_task_restore_begin(rill_task_env_t *env, rill_task_t *t, char *errstr, size_t errstr_size) {
        rill_app_t *app = env->app;
        char dir[1024], identity[600];
        store_paths(app, t, dir, sizeof(dir), identity, sizeof(identity));
        int forced_full = 0; /* wiped here: the restore starts from nothing */
        for (int attempt = 0; attempt < 2; attempt++) {
                int wiped = 0;
                const rill_wstore_open_opts_t opts = {RILL_WSTORE_LOCK_WAIT_MS,
                                                      RILL_WSTORE_TRANSIENT_RETRIES, &app->codec};
                t->store = rill_wstore_open_opts(dir, identity, &opts, &wiped, errstr,
                                                 errstr_size);
                if (!t->store)
                        return -1;
                t->restore_full = wiped || forced_full;
                /* A store that applied input beyond the group's committed
                 * offset holds the effects of a transaction that did not
                 * commit: one the broker reported committed and then lost
                 * (a coordinator that skipped its markers, ended by an abort,
                 * or the offsets reset to just before it:
                 * docs/troubleshooting.md). The replay from the committed
                 * offset would count that input twice; the changelog holds
                 * committed transactions only, so the store is rebuilt from
                 * it. (Offsets reset further back are not made exact this
                 * way: the changelog holds the effects of the input read
                 * again. A lost commit that moved no input, a keyed task's
                 * idle advance, is not seen either.) The committed offset is
                 * known here (load_positions waits for it), except when the
                 * group never committed and the log start could not be read:
                 * the store is rebuilt then too. */
                int64_t applied = rill_wstore_input_offset(t->store);
                if (attempt == 0 && applied >= 0 &&
                    (t->committed_offset < 0 || applied > t->committed_offset)) {
                        rill_log(RILL_LOG_WARN, "store_ahead_of_committed_input",
                                 "partition=%d store_input_offset=%lld committed_offset=%lld "
                                 "action=wipe_and_restore_from_start",
                                 t->partition, (long long)applied, (long long)t->committed_offset);
                        rill_wstore_close(t->store);
                        t->store = NULL;
                        if (rill_wstore_wipe(dir, errstr, errstr_size))
                                return -1;
                        forced_full = 1;
                        continue;
                }
                int rc = rill_restore_begin(env->restorer, t->store, app->changelog_topic,
                                            t->partition, app->restore_timeout_ms, errstr,
                                            errstr_size);
                if (rc == 0)
                        return 0;
                if (rc == 2) {
                        rill_log(RILL_LOG_INFO, "task_restored",
                                 "partition=%d from_offset=%lld to_offset=%lld records=0 "
                                 "elapsed_ms=0 full=%d",
                                 t->partition, (long long)rill_wstore_changelog_offset(t->store),
                                 (long long)rill_wstore_changelog_offset(t->store), wiped);
                        return store_ready(env, t, errstr, errstr_size) ? -1 : 1;
                }
                rill_wstore_close(t->store);
                t->store = NULL;
                if (rc < 0)
                        return rc; /* -2: the changelog's leader out of reach */
                if (attempt == 1)
                        return -1;
                /* the store belongs to another incarnation of the changelog */
                rill_log(RILL_LOG_WARN, "store_mismatch",
                         "partition=%d action=wipe_and_restore_from_start", t->partition);
                if (rill_wstore_wipe(dir, errstr, errstr_size))
                        return -1;
                forced_full = 1;
        }
        return -1;
}

int rill_task_restore_step(rill_task_env_t *env, rill_task_t *t, int64_t slice_ms, char *errstr,
                           size_t errstr_size) {
        rill_restore_stats_t st;
        int rc = rill_restore_step(env->restorer, slice_ms, &st, errstr, errstr_size);
        if (rc == 2)
                return 2;
        if (rc == 0) {
                rill_log(RILL_LOG_INFO, "task_restored",
                         "partition=%d from_offset=%lld to_offset=%lld records=%lld "
                         "elapsed_ms=%lld full=%d",
                         t->partition, (long long)st.start_offset, (long long)st.end_offset,
                         (long long)st.records, (long long)st.elapsed_ms,
                         t->restore_full || st.start_offset == 0);
                if (!store_ready(env, t, errstr, errstr_size))
                        return 0;
                return -1;
        }
        rill_wstore_close(t->store);
        t->store = NULL;
        return -1;
}

void rill_task_restore_abandon(rill_task_env_t *env, rill_task_t *t) {
        (void)t;
        rill_restore_abandon(env->restorer);
}

/* The store is complete: stream time, sources and close bound from it, and
 * the windows closed before the restore dropped. @returns 0 or -1 (errstr;
 * the store is closed). */
static int store_ready(rill_task_env_t *env, rill_task_t *t, char *errstr, size_t errstr_size) {
        rill_app_t *app = env->app;
        t->stream_time = t->committed_stream_time = rill_wstore_stream_time(t->store);
        t->closed_bound = t->committed_closed_bound = INT64_MIN;
        if (!app->keyed) {
                /* The sources the restored state knew of. How many there are
                 * is learnt from the log only (every watermark record carries
                 * its writer's count of input partitions), never from this
                 * process's view of the input, so a replay waits for the
                 * same sources at the same record. A new store knows none:
                 * stream time holds until the sources have reported. */
                size_t len = 0;
                const unsigned char *v = rill_wstore_sources(t->store, &len);
                size_t n = len / 8 <= RILL_SOURCES_MAX ? len / 8 : 0;
                t->nsrc = t->committed_nsrc = (int)n;
                t->src = malloc((n ? n : 1) * sizeof(*t->src));
                t->committed_src = malloc((n ? n : 1) * sizeof(*t->committed_src));
                if (!t->src || !t->committed_src) {
                        snprintf(errstr, errstr_size, "out of memory for %zu sources", n);
                        rill_wstore_close(t->store);
                        t->store = NULL;
                        free(t->src), free(t->committed_src);
                        t->src = t->committed_src = NULL;
                        return -1;
                }
                for (size_t i = 0; i < n; i++)
                        t->src[i] = t->committed_src[i] =
                            v && (i + 1) * 8 <= len ? rill_be64_get(v + i * 8) : INT64_MIN;
        }
        if (drop_closed_windows(env, t, errstr, errstr_size)) {
                rill_wstore_close(t->store);
                t->store = NULL;
                free(t->src), free(t->committed_src);
                t->src = t->committed_src = NULL;
                return -1;
        }
        t->last_activity_ms = rill_now_mono_ms();
        return 0;
}

void rill_task_close(rill_task_t *t) {
        if (t->store)
                rill_wstore_close(t->store);
        free(t->hops);
        free(t->src);
        free(t->committed_src);
        rill_wlist_free(&t->closing);
        free(t);
}

/* ---- processing ---------------------------------------------------------------- */

static void raw_of(const rd_kafka_message_t *m, rill_raw_t *raw) {
        raw->key = m->key;
        raw->key_len = m->key_len;
        raw->value = m->payload;
        raw->value_len = m->len;
        raw->topic = rd_kafka_topic_name(m->rkt);
        raw->partition = m->partition;
        raw->offset = m->offset;
}

static void raw_of_batch(rill_task_env_t *env, const rd_kafka_message_t *m, rill_raw_t *raw) {
        raw_of(m, raw);
        raw->now_wall_ms = env->batch_wall_ms;
}

static int process_source(rill_task_env_t *env, rill_task_t *t, const rd_kafka_message_t *m,
                          char *errstr, size_t errstr_size) {
        rill_app_t *app = env->app;
        rill_raw_t raw;
        rill_event_t ev;
        rill_reject_t rej;
        raw_of_batch(env, m, &raw);
        memset(&rej, 0, sizeof(rej));
        if (app->topo.extract(app->topo.opaque, &raw, &ev, &rej))
                return rill_collector_dead_letter(env->coll, m, m->payload, m->len, &rej, errstr,
                                               errstr_size);
        t->last_activity_ms = env->batch_mono_ms;
        if (!rill_event_time_valid(ev.ts_ms)) {
                snprintf(rej.reason, sizeof(rej.reason), "invalid_timestamp");
                snprintf(rej.detail, sizeof(rej.detail),
                         "event time %lld ms is outside years 1 to 9999", (long long)ev.ts_ms);
                return rill_collector_dead_letter(env->coll, m, m->payload, m->len, &rej, errstr,
                                               errstr_size);
        }
        /* late when its last window (the one that closes last) is closed */
        int64_t ws = rill_window_start(ev.ts_ms, app->advance_ms);
        if (t->progress != INT64_MIN &&
            rill_window_closed(ws, app->window_ms, app->grace_ms, t->progress)) {
                snprintf(rej.reason, sizeof(rej.reason), "late");
                snprintf(rej.detail, sizeof(rej.detail),
                         "window [%lld, %lld) closed at its input partition's event-time progress "
                         "%lld (grace %lld ms)",
                         (long long)ws, (long long)(ws + app->window_ms), (long long)t->progress,
                         (long long)app->grace_ms);
                return rill_collector_dead_letter(env->coll, m, m->payload, m->len, &rej, errstr,
                                               errstr_size);
        }
        if (ev.ts_ms > t->progress) {
                note_close_due(app, t, t->progress, ev.ts_ms);
                t->progress = ev.ts_ms;
        }
        /* value: [1][amount BE][event time BE][original bytes] */
        size_t len = RILL_REPART_HDR + m->len;
        unsigned char stackbuf[4096], *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
        buf[0] = 1;
        rill_be64_put(buf + 1, ev.value);
        rill_be64_put(buf + 9, ev.ts_ms);
        if (m->len)
                memcpy(buf + RILL_REPART_HDR, m->payload, m->len);
        int rc = rill_collector_send(env->coll, RILL_OUT_REPARTITION, RD_KAFKA_PARTITION_UA, ev.key,
                                     ev.key_len, buf, len, NULL, -1, errstr, errstr_size);
        if (buf != stackbuf)
                free(buf);
        return rc;
}

/* The minimum progress over every source partition, INT64_MIN while one
 * has not reported. Also tells which source holds it (-1 none). */
static int64_t sources_min(const rill_task_t *t, int *holder) {
        int64_t lo = INT64_MAX;
        *holder = -1;
        for (int i = 0; i < t->nsrc; i++)
                if (t->src[i] < lo)
                        lo = t->src[i], *holder = i;
        return t->nsrc ? lo : INT64_MIN;
}

/* Sources added (input partitions added while running): known from now on,
 * unreported (they hold stream time until they report). Both arrays keep
 * room for them; the committed one is restored from on an abort.
 * @returns 0, -1 out of memory. */
static int grow_sources(rill_task_t *t, int n) {
        int64_t *a = realloc(t->src, (size_t)n * sizeof(*a));
        if (!a)
                return -1;
        t->src = a;
        int64_t *b = realloc(t->committed_src, (size_t)n * sizeof(*b));
        if (!b)
                return -1;
        t->committed_src = b;
        for (int i = t->nsrc; i < n; i++)
                t->src[i] = INT64_MIN;
        for (int i = t->committed_nsrc; i < n; i++)
                t->committed_src[i] = INT64_MIN;
        rill_log(RILL_LOG_INFO, "sources_added", "partition=%d from=%d to=%d", t->partition,
                 t->nsrc, n);
        t->nsrc = n;
        return 0;
}

/* A watermark record: source s has progressed to a time. Stream time is the
 * minimum over all sources; it never goes back (a window once closed stays
 * closed), and a source's progress never goes back either (an older
 * watermark, say from a source task that restarted without its metadata,
 * changes nothing). */
static void be32_put(unsigned char *p, int32_t v) {
        p[0] = (unsigned char)((uint32_t)v >> 24);
        p[1] = (unsigned char)((uint32_t)v >> 16);
        p[2] = (unsigned char)((uint32_t)v >> 8);
        p[3] = (unsigned char)v;
}

/* Event time moved from `from` to `to`: a window may close now (a source's
 * watermark or an aggregation's stream time crossed a window end + grace).
 * The thread commits early when the task is caught up, so a result does not
 * wait for the next commit interval (worker.c run_loop). */
static void note_close_due(const rill_app_t *app, rill_task_t *t, int64_t from, int64_t to) {
        if (from == INT64_MIN ||
            rill_window_close_bound(app->window_ms, app->advance_ms, app->grace_ms, from) !=
                rill_window_close_bound(app->window_ms, app->advance_ms, app->grace_ms, to))
                t->close_due = 1;
}

static int32_t be32_get(const unsigned char *p) {
        return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
                         p[3]);
}

static int source_progress(rill_task_env_t *env, rill_task_t *t, const rd_kafka_message_t *m,
                           const unsigned char *p, char *errstr, size_t errstr_size) {
        (void)env;
        int32_t s = be32_get(p + 1);
        int64_t progress = rill_be64_get(p + 5);
        int32_t known = m->len >= RILL_WM_LEN ? be32_get(p + 21) : 0;
        int32_t need = known > s + 1 ? known : s + 1;
        if (s < 0 || need > RILL_SOURCES_MAX || !t->src) {
                rill_log(RILL_LOG_WARN, "watermark_ignored",
                         "partition=%d offset=%lld source=%d sources=%d", t->partition,
                         (long long)m->offset, s, known);
                return 0;
        }
        if (need > t->nsrc && grow_sources(t, need)) {
                snprintf(errstr, errstr_size, "out of memory for %d sources", need);
                return -1;
        }
        if (progress > t->src[s])
                t->src[s] = progress;
        int holder;
        int64_t lo = sources_min(t, &holder);
        if (lo != INT64_MIN && lo > t->stream_time) {
                note_close_due(env->app, t, t->stream_time, lo);
                t->stream_time = lo;
        }
        return 0;
}

int rill_task_holdback(rill_task_env_t *env, const rill_task_t *t, int *holder, int64_t *behind_ms) {
        rill_app_t *app = env->app;
        *holder = -1;
        *behind_ms = 0;
        if (!t->src)
                return 0;
        (void)app;
        int64_t lo = sources_min(t, holder), hi = INT64_MIN;
        for (int i = 0; i < t->nsrc; i++)
                if (t->src[i] > hi)
                        hi = t->src[i];
        if (lo == INT64_MIN && hi != INT64_MIN)
                *behind_ms = -1; /* a source has not reported yet */
        else if (lo != INT64_MIN)
                *behind_ms = hi - lo;
        return 1;
}

static int process_agg(rill_task_env_t *env, rill_task_t *t, const rd_kafka_message_t *m,
                       char *errstr, size_t errstr_size) {
        rill_app_t *app = env->app;
        rill_event_t ev;
        rill_reject_t rej;
        const void *orig = m->payload;
        size_t orig_len = m->len;
        memset(&rej, 0, sizeof(rej));
        if (app->keyed) {
                rill_raw_t raw;
                raw_of_batch(env, m, &raw);
                if (app->topo.extract(app->topo.opaque, &raw, &ev, &rej))
                        return rill_collector_dead_letter(env->coll, m, orig, orig_len, &rej, errstr,
                                                       errstr_size);
                /* Keyed input is trusted to be partitioned by the aggregation
                 * key: a record whose key is not its aggregation key may sit in
                 * another partition than its key's other records, and two tasks
                 * would then own one window (two partial results in Kafka, one
                 * Postgres statement upserting a row twice). */
                if (!m->key || m->key_len != ev.key_len || memcmp(m->key, ev.key, ev.key_len)) {
                        snprintf(rej.reason, sizeof(rej.reason), "key_mismatch");
                        snprintf(rej.detail, sizeof(rej.detail),
                                 "--input-keyed: the record key (%zu bytes) is not its "
                                 "aggregation key (%zu bytes); produce with the seller id as "
                                 "key, or run without --input-keyed",
                                 m->key ? m->key_len : 0, ev.key_len);
                        return rill_collector_dead_letter(env->coll, m, orig, orig_len, &rej, errstr,
                                                       errstr_size);
                }
        } else {
                const unsigned char *p = m->payload;
                if ((m->len == RILL_WM_LEN || m->len == RILL_WM_LEN_V1) && p[0] == RILL_REPART_WM)
                        return source_progress(env, t, m, p, errstr, errstr_size);
                if (m->len < RILL_REPART_HDR || p[0] != 1 || !m->key || !m->key_len) {
                        snprintf(rej.reason, sizeof(rej.reason), "corrupt_internal");
                        snprintf(rej.detail, sizeof(rej.detail),
                                 "repartition record of %zu bytes is not in rill format v1",
                                 m->len);
                        return rill_collector_dead_letter(env->coll, m, orig, orig_len, &rej, errstr,
                                                       errstr_size);
                }
                ev.key = m->key;
                ev.key_len = m->key_len;
                ev.value = rill_be64_get(p + 1);
                ev.ts_ms = rill_be64_get(p + 9);
                orig = p + RILL_REPART_HDR;
                orig_len = m->len - RILL_REPART_HDR;
        }
        if (!rill_event_time_valid(ev.ts_ms)) {
                /* whatever the extract function accepted: a time outside
                 * years 1..9999 would overflow window arithmetic and push
                 * stream time past every later record */
                snprintf(rej.reason, sizeof(rej.reason), "invalid_timestamp");
                snprintf(rej.detail, sizeof(rej.detail),
                         "event time %lld ms is outside years 1 to 9999", (long long)ev.ts_ms);
                return rill_collector_dead_letter(env->coll, m, orig, orig_len, &rej, errstr, errstr_size);
        }
        if (app->keyed && ev.ts_ms > t->stream_time) { /* unkeyed: from the sources */
                note_close_due(app, t, t->stream_time, ev.ts_ms);
                t->stream_time = ev.ts_ms;
        }
        t->last_activity_ms = env->batch_mono_ms;
        /* the event's windows: from the first still open to its last (one
         * for tumbling windows); late when even the last is closed */
        int64_t ws = rill_window_start(ev.ts_ms, app->advance_ms);
        if (rill_window_closed(ws, app->window_ms, app->grace_ms, t->stream_time)) {
                snprintf(rej.reason, sizeof(rej.reason), "late");
                snprintf(rej.detail, sizeof(rej.detail),
                         "window [%lld, %lld) closed at stream time %lld (grace %lld ms)",
                         (long long)ws, (long long)(ws + app->window_ms),
                         (long long)t->stream_time, (long long)app->grace_ms);
                return rill_collector_dead_letter(env->coll, m, orig, orig_len, &rej, errstr, errstr_size);
        }
        int64_t first = ws;
        if (app->advance_ms != app->window_ms) {
                first = rill_window_first_start(ev.ts_ms, app->window_ms, app->advance_ms);
                /* windows already closed (emitted) take nothing more, as in
                 * Kafka Streams; the event counts in its open ones */
                while (first < ws &&
                       (first < t->closed_bound ||
                        rill_window_closed(first, app->window_ms, app->grace_ms, t->stream_time)))
                        first += app->advance_ms;
        }
        int n = (int)((ws - first) / app->advance_ms) + 1;
        /* The aggregator adds into copies, every window's first, then they
         * are stored: an add that fails (an overflow) leaves every window as
         * it was and dead-letters the event. */
        const rill_aggregator_t *agg = app->agg;
        size_t sz = (agg->state_size + 15) & ~(size_t)15; /* every state 16-aligned */
        _Alignas(16) unsigned char one[RILL_STATE_BYTES_MAX];
        unsigned char *st = one;
        if (n > 1) {
                if (!t->hops && !(t->hops = aligned_alloc(16, RILL_WINDOW_HOPS_MAX *
                                                                  RILL_STATE_BYTES_MAX))) {
                        snprintf(errstr, errstr_size, "out of memory for hopping windows");
                        return -1;
                }
                st = t->hops;
        }
        for (int i = 0; i < n; i++) {
                unsigned char *s = st + (size_t)i * sz;
                int64_t start = first + i * app->advance_ms;
                int found =
                    rill_wstore_get(t->store, start, ev.key, ev.key_len, s, errstr, errstr_size);
                if (found < 0)
                        return -1;
                if (!found)
                        agg->init(agg->opaque, s);
                if (agg->add(agg->opaque, s, &ev, &rej)) {
                        if (!rej.reason[0])
                                snprintf(rej.reason, sizeof(rej.reason), "aggregate_failed");
                        return rill_collector_dead_letter(env->coll, m, orig, orig_len, &rej, errstr,
                                                       errstr_size);
                }
        }
        for (int i = 0; i < n; i++)
                rill_wstore_put(t->store, first + i * app->advance_ms, ev.key, ev.key_len,
                                st + (size_t)i * sz);
        return 0;
}

int rill_task_process(rill_task_env_t *env, rill_task_t *t, const rd_kafka_message_t *m,
                      char *errstr, size_t errstr_size) {
        if (t->first_uncommitted < 0)
                t->first_uncommitted = m->offset;
        int rc = t->kind == RILL_TASK_SOURCE ? process_source(env, t, m, errstr, errstr_size)
                                              : process_agg(env, t, m, errstr, errstr_size);
        t->next_offset = m->offset + 1;
        t->records_since_commit++;
        return rc;
}

int rill_task_idle_due(rill_task_env_t *env, const rill_task_t *t, int64_t now_mono_ms) {
        rill_app_t *app = env->app;
        /* unkeyed input: the sources advance (into the log, as watermarks);
         * keyed input: the aggregation task is its own source */
        int advances = t->kind == RILL_TASK_SOURCE || app->keyed;
        return advances && app->idle_ms && now_mono_ms - t->last_activity_ms >= app->idle_ms;
}

int rill_task_idle_advance(rill_task_env_t *env, rill_task_t *t, int64_t now_mono_ms,
                           int caught_up) {
        (void)env;
        t->last_activity_ms = now_mono_ms; /* asked again after idle.timeout.ms */
        if (!caught_up)
                return 0;
        int64_t wall = rill_now_wall_ms();
        int64_t *time = t->kind == RILL_TASK_SOURCE ? &t->progress : &t->stream_time;
        if (wall > *time) {
                rill_log(RILL_LOG_DEBUG, "idle_advance", "partition=%d kind=%s time=%lld",
                         t->partition, t->kind == RILL_TASK_SOURCE ? "source" : "aggregate",
                         (long long)wall);
                *time = wall;
                return 1;
        }
        return 0;
}

/* ---- the commit cycle's task part ------------------------------------------------ */

typedef struct changelog_ctx {
        rill_task_env_t *env;
        rill_task_t *t;
        int rc;
        char *errstr;
        size_t errstr_size;
} changelog_ctx_t;

static void produce_change(void *opaque, int64_t wstart, const char *key, size_t key_len,
                           const void *state) {
        changelog_ctx_t *c = opaque;
        if (c->rc)
                return;
        unsigned char kbuf[RILL_WKEY_HDR + 4096], vbuf[RILL_ENCODED_MAX];
        if (key_len > 4096)
                return;
        size_t klen = rill_wkey_encode(wstart, key, key_len, kbuf);
        size_t vlen = 0;
        if (state) {
                const rill_state_codec_t *codec = rill_wstore_codec(c->t->store);
                if (!(vlen = codec->encode(codec->opaque, state, vbuf, sizeof(vbuf)))) {
                        snprintf(c->errstr, c->errstr_size,
                                 "a window's state does not encode in %d bytes (the "
                                 "aggregator's encode function)", RILL_ENCODED_MAX);
                        c->rc = -1;
                        return;
                }
        }
        c->rc = rill_collector_send(c->env->coll, RILL_OUT_CHANGELOG,
                                    c->t->partition, kbuf, klen, state ? vbuf : NULL, vlen, NULL,
                                    c->t->partition, c->errstr,
                                    c->errstr_size);
}

/* Format a closed window and produce it to the output topic.
 * @returns 0 emitted, 1 dead-lettered (the format cannot fit it), -1 error. */
static int emit_result(rill_task_env_t *env, const rill_result_t *res, char *errstr,
                       size_t errstr_size) {
        rill_app_t *app = env->app;
        size_t size = res->key_len * 6 + RESULT_FIXED, n = 0;
        char *buf = NULL;
        for (; size <= RESULT_MAX; size *= 2) {
                free(buf);
                if (!(buf = malloc(size))) {
                        snprintf(errstr, errstr_size, "out of memory formatting a result");
                        return -1;
                }
                if ((n = app->topo.format(app->topo.opaque, res, buf, size)))
                        break;
        }
        int rc;
        if (n) {
                rc = rill_collector_send(env->coll, RILL_OUT_OUTPUT, RD_KAFKA_PARTITION_UA, res->key,
                                         res->key_len, buf, n, NULL, -1, errstr, errstr_size);
        } else {
                /* the window is not lost: its figures go to the dead-letter
                 * topic, keyed by its key, with the reason */
                char v[128 + RILL_AGG_FIELDS_MAX * (RILL_VALUE_NAME_MAX + 32)], ws[24];
                int vl = snprintf(v, sizeof(v), "{\"window_start_ms\":%lld,\"window_end_ms\":%lld",
                                  (long long)res->window_start_ms, (long long)res->window_end_ms);
                vl += (int)rill_aggregate_json(res->aggregator, res->state, v + vl,
                                               sizeof(v) - (size_t)vl - 1);
                v[vl++] = '}';
                snprintf(ws, sizeof(ws), "%lld", (long long)res->window_start_ms);
                rd_kafka_headers_t *h = rd_kafka_headers_new(3);
                rd_kafka_header_add(h, "rill.error.reason", -1, "result_unformattable", -1);
                rd_kafka_header_add(h, "rill.error.detail", -1,
                                    "the format function did not fit the result in 1 MiB", -1);
                rd_kafka_header_add(h, "rill.window.start", -1, ws, -1);
                rill_log(RILL_LOG_ERROR, "result_unformattable",
                         "window_start=%lld key_bytes=%zu action=dead_letter",
                         (long long)res->window_start_ms, res->key_len);
                rc = rill_collector_send(env->coll, RILL_OUT_DLQ, RD_KAFKA_PARTITION_UA, res->key,
                                         res->key_len, v, (size_t)vl, h, -1, errstr,
                                         errstr_size);
                if (!rc)
                        rc = 1;
        }
        free(buf);
        return rc;
}

/* Queue a result's Postgres row: the figure each column holds. */
static void pg_row(const rill_app_t *app, rill_pgsink_t *pg, const rill_result_t *res) {
        rill_value_t v[RILL_PG_COLUMNS_MAX];
        for (int c = 0; c < app->pgspec.ncolumns; c++)
                v[c] = rill_result_value(res, app->pg_value[c]);
        rill_pgsink_add_result(pg, res->key, res->key_len, res->window_start_ms,
                               res->window_end_ms, v);
}

/* A source task's progress moved since its last commit: tell every
 * repartition partition, in this transaction. */
static int publish_progress(rill_task_env_t *env, rill_task_t *t, char *errstr, size_t errstr_size) {
        rill_app_t *app = env->app;
        int sources = atomic_load(&app->sources);
        /* progress moved, or the input's partition count changed (or was
         * never announced by this task's owner): an unreported progress
         * (INT64_MIN) changes nothing at the aggregation tasks but the
         * number of sources they wait for */
        if ((t->progress == t->committed_progress || t->progress == INT64_MIN) &&
            sources == t->committed_sources_sent)
                return 0;
        unsigned char v[RILL_WM_LEN];
        v[0] = RILL_REPART_WM;
        be32_put(v + 1, t->partition);
        rill_be64_put(v + 5, t->progress);
        rill_be64_put(v + 13, t->next_offset);
        be32_put(v + 21, sources);
        t->sources_sent = sources;
        for (int32_t p = 0; p < app->partitions; p++)
                if (rill_collector_send(env->coll, RILL_OUT_REPARTITION, p, RILL_WM_KEY, RILL_WM_KEY_LEN, v,
                                        sizeof(v), NULL, -1, errstr, errstr_size))
                        return -1;
        return 0;
}

int rill_task_flush(rill_task_env_t *env, rill_task_t *t, char *errstr, size_t errstr_size) {
        if (t->kind == RILL_TASK_SOURCE)
                return publish_progress(env, t, errstr, errstr_size);
        rill_app_t *app = env->app;
        /* 1. close the windows that stream time has passed (emit on window close) */
        if (t->stream_time != INT64_MIN) {
                int64_t bound = rill_window_close_bound(app->window_ms, app->advance_ms,
                                                        app->grace_ms, t->stream_time);
                if (bound > t->closed_bound) {
                        rill_wlist_free(&t->closing);
                        if (rill_wstore_closed(t->store, bound, &t->closing, errstr, errstr_size))
                                return -1;
                        t->closed_bound = bound;
                        if (t->closing.cnt)
                                rill_fault("closing_windows");
                        for (size_t i = 0; i < t->closing.cnt; i++) {
                                rill_wentry_t *e = &t->closing.v[i];
                                rill_result_t res = {e->key,    e->key_len,
                                                     e->wstart, e->wstart + app->window_ms,
                                                     e->state,  app->agg};
                                int rc = emit_result(env, &res, errstr, errstr_size);
                                if (rc < 0)
                                        return -1;
                                if (rc == 0 && env->pg)
                                        pg_row(app, env->pg, &res);
                                rill_wstore_delete(t->store, e->wstart, e->key, e->key_len);
                        }
                }
        }
        /* 2. the changelog: every cached change, then the stream time */
        changelog_ctx_t c = {env, t, 0, errstr, errstr_size};
        rill_wstore_foreach_dirty(t->store, produce_change, &c);
        if (c.rc)
                return -1;
        if (t->src && (t->nsrc != t->committed_nsrc ||
                       memcmp(t->src, t->committed_src, (size_t)t->nsrc * sizeof(*t->src)))) {
                size_t n = (size_t)t->nsrc * 8;
                unsigned char *v = malloc(n);
                if (!v) {
                        snprintf(errstr, errstr_size, "out of memory writing source progress");
                        return -1;
                }
                for (int i = 0; i < t->nsrc; i++)
                        rill_be64_put(v + i * 8, t->src[i]);
                rill_wstore_put_sources(t->store, v, n);
                int rc = rill_collector_send(env->coll, RILL_OUT_CHANGELOG, t->partition, RILL_SOURCES_KEY,
                                             RILL_SOURCES_KEY_LEN, v, n, NULL,
                                             t->partition, errstr,
                                             errstr_size);
                free(v);
                if (rc)
                        return -1;
        }
        if (t->stream_time != t->committed_stream_time) {
                unsigned char v[16];
                rill_be64_put(v, t->stream_time);
                rill_be64_put(v + 8, t->closed_bound);
                rill_wstore_put_closed_bound(t->store, t->closed_bound);
                if (rill_collector_send(env->coll, RILL_OUT_CHANGELOG, t->partition,
                                        RILL_STREAM_TIME_KEY, RILL_STREAM_TIME_KEY_LEN, v, 16, NULL,
                                        t->partition, errstr,
                                        errstr_size))
                        return -1;
        }
        return 0;
}

int rill_task_committed(rill_task_t *t, int64_t changelog_next, char *errstr,
                        size_t errstr_size) {
        if (t->next_offset >= 0)
                t->committed_offset = t->next_offset;
        t->first_uncommitted = -1;
        t->records_since_commit = 0;
        if (t->kind != RILL_TASK_AGG) {
                t->committed_progress = t->progress;
                t->committed_sources_sent = t->sources_sent;
                return 0;
        }
        int rc = 0;
        if (changelog_next >= 0) {
                /* RocksDB now catches up with what the changelog committed,
                 * and notes the input offset committed with it (checked
                 * against the group's at the next start: restore_begin) */
                if (t->next_offset >= 0)
                        rill_wstore_put_input_offset(t->store, t->next_offset);
                rc = rill_wstore_apply(t->store, changelog_next, t->stream_time, errstr,
                                       errstr_size);
        }
        t->committed_stream_time = t->stream_time;
        t->committed_closed_bound = t->closed_bound;
        if (t->src)
                memcpy(t->committed_src, t->src, (size_t)t->nsrc * sizeof(*t->src));
        t->committed_nsrc = t->nsrc;
        rill_wlist_free(&t->closing);
        return rc;
}

int64_t rill_task_abort(rill_task_t *t) {
        int64_t rewind = t->first_uncommitted;
        if (rewind >= 0) /* the consumer is rewound: the end must be seen again */
                t->eof_offset = -1;
        t->first_uncommitted = -1;
        /* the position is where the input is rewound to: the last commit,
         * or, for a task that never committed (its committed offset could
         * not be read), the first record it processed */
        t->next_offset = t->committed_offset >= 0 ? t->committed_offset : rewind;
        t->records_since_commit = 0;
        t->progress = t->committed_progress;
        t->sources_sent = t->committed_sources_sent;
        if (t->kind == RILL_TASK_AGG) {
                t->nsrc = t->committed_nsrc; /* room stays allocated */
                if (t->src)
                        memcpy(t->src, t->committed_src, (size_t)t->nsrc * sizeof(*t->src));
                rill_wstore_discard(t->store);
                t->stream_time = t->committed_stream_time;
                t->closed_bound = t->committed_closed_bound;
                rill_wlist_free(&t->closing);
        }
        return rewind;
}

void rill_task_set_committed_progress(rill_task_t *t, int64_t progress) {
        t->progress = t->committed_progress = progress;
}
