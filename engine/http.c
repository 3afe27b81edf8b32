/*
 * http.c -- the worker process's HTTP endpoint (libmicrohttpd, its own
 * polling thread):
 *   GET /healthz   200 while no stream thread failed fatally, else 503
 *   GET /readyz    200 once every thread joined the group and no task is
 *                  restoring (Kubernetes readiness: not ready during restore)
 *   GET /metrics   Prometheus text format
 *   GET /tasks     the owned tasks: event time, lag, for aggregation tasks the
 *                  source partition holding their windows back and by how much
 *   GET /query?key=K  the committed windows of key K (interactive queries),
 *                  answered by this process when it owns K's partition, else
 *                  forwarded to the owner (owners.c finds it, peer.c asks it):
 *                  200 with JSON, 404 when the owner holds none, 400 for a
 *                  missing or too long key, 503 (Retry-After) with a reason
 *                  when it cannot be answered now: the partition restoring
 *                  (a stale read is refused, not served), a rebalance, an
 *                  owner unknown or unreachable, too many queries running
 *
 * Routing (route): a request with the X-Rill-Forwarded header came from
 * another worker and is answered locally or refused (not_owner), never
 * forwarded again: at most one hop. See docs/architecture.md, "Interactive
 * queries", for the design.
 *
 * The endpoint is unauthenticated, so a query's cost is bounded and cannot
 * starve the probes: every connection has its own thread (at most
 * CONNECTIONS_MAX), at most QUERIES_MAX queries run at once (more are
 * answered 503 at once), a key is at most RILL_QUERY_KEY_MAX bytes, an answer
 * holds at most RILL_QUERY_WINDOWS_MAX windows, and a query scans only the
 * partition that owns the key when that can be derived (see
 * owning_partition), holding a worker's task lock for one store's scan at a
 * time. The answer itself is built by rill_query_answer (json.c), a pure
 * function that is unit-tested and fuzzed: its body is always valid JSON.
 *
 * @locality the handler runs on libmicrohttpd's connection threads. It reads
 * the stream threads' metrics (atomics), the app's fatal slot (under its
 * lock) and, for queries, the task stores under each worker's task lock;
 * forwarding blocks the connection thread for at most ~10 s (two group
 * descriptions and two forwards, each bounded).
 */
#include "internal.h"
#include "json.h"
#include "log.h"
#include "owners.h"
#include "peer.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNECTIONS_MAX 64  /* connection threads; beyond them new connections wait */
#define QUERIES_MAX 2       /* queries answered at once; more get 503 */
#define RETRY_AFTER_S "1"
#define RILL_QUERY_FORWARD_MS 2500 /* one forwarded query, connect to last byte */
#define RILL_QUERY_FANOUT_MS 8000  /* all the members asked for an underivable key */
#define TEXT_MAX (64u << 20) /* /metrics of 64 threads x 2 x 1000s of partitions fits */

struct rill_http {
        struct MHD_Daemon *daemon;
        rill_app_t *app;
        atomic_int queries; /* queries running now */
        rill_owners_t *owners; /* who owns which partition, for forwarding */
        rill_query_lookup_fn lookup; /* this process's committed windows of a key */
        void *lookup_opaque;
};

typedef rill_jbuf_t tbuf_t;
#define tb_printf rill_jbuf_printf

#define OFF(field) offsetof(rill_metrics_t, field)

/* ---- the endpoints ------------------------------------------------------------------ */

static int fatal_error(rill_app_t *app, char *buf, size_t size) {
        pthread_mutex_lock(&app->fatal_lock);
        int failed = app->fatal[0] != 0;
        snprintf(buf, size, "%s", app->fatal);
        pthread_mutex_unlock(&app->fatal_lock);
        return failed;
}

/* Liveness: a thread failed for good, or is stuck: no commit cycle has
 * succeeded (nor found nothing to commit) for RILL_STUCK_MS, whatever it
 * does meanwhile (retried commits, recoveries and their backoff). A
 * recovery is bounded by the same time (recover_producer). */
static int health(rill_app_t *app, tbuf_t *b) {
        char err[512];
        if (fatal_error(app, err, sizeof(err))) {
                tb_printf(b, "failed: %s\n", err);
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        }
        int64_t now = rill_now_mono_ms();
        for (int i = 0; i < app->nthreads; i++) {
                rill_metrics_t *m = &app->metrics[i];
                long long last = atomic_load(&m->healthy_mono_ms);
                if (last && now - last > RILL_STUCK_MS) {
                        tb_printf(b, "stuck: thread %d has not committed for %lld ms (bound %d "
                                     "ms); see its commit_failed log lines\n",
                                  i, (long long)(now - last), RILL_STUCK_MS);
                        return MHD_HTTP_SERVICE_UNAVAILABLE;
                }
        }
        tb_printf(b, "ok\n");
        return MHD_HTTP_OK;
}

static int ready(rill_app_t *app, tbuf_t *b) {
        char err[512];
        if (fatal_error(app, err, sizeof(err))) {
                tb_printf(b, "failed: %s\n", err);
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        }
        int restoring = 0, joined = 1;
        for (int i = 0; i < app->nthreads; i++) {
                rill_metrics_t *m = &app->metrics[i];
                if (atomic_load(&m->recovering)) {
                        tb_printf(b, "not ready: thread %d is recovering from a fatal "
                                     "transactional error\n", i);
                        return MHD_HTTP_SERVICE_UNAVAILABLE;
                }
                joined &= atomic_load(&m->joined);
                for (int s = 0; s < 2 * m->partitions; s++)
                        restoring += atomic_load(&m->restoring[s]);
        }
        if (!joined || restoring) {
                tb_printf(b, "not ready: %s%d task(s) restoring\n",
                          joined ? "" : "not every thread has joined the group; ", restoring);
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        }
        tb_printf(b, "ready\n");
        return MHD_HTTP_OK;
}

static void counter(tbuf_t *b, rill_app_t *app, const char *name, const char *help,
                    size_t offset) {
        tb_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
        for (int i = 0; i < app->nthreads; i++)
                tb_printf(b, "%s{thread=\"%d\"} %lld\n", name, i,
                          atomic_load((atomic_llong *)((char *)&app->metrics[i] + offset)));
}

static void histogram(tbuf_t *b, rill_app_t *app, const char *name, const char *help,
                      size_t offset) {
        tb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
        for (int i = 0; i < app->nthreads; i++) {
                rill_hist_t *h = (rill_hist_t *)((char *)&app->metrics[i] + offset);
                long long cum = 0;
                for (int k = 0; k <= RILL_HIST_N; k++) {
                        cum += atomic_load(&h->buckets[k]);
                        if (k < RILL_HIST_N)
                                tb_printf(b, "%s_bucket{thread=\"%d\",le=\"%lld\"} %lld\n", name, i,
                                          (long long)rill_hist_bounds_ms[k], cum);
                        else
                                tb_printf(b, "%s_bucket{thread=\"%d\",le=\"+Inf\"} %lld\n", name, i, cum);
                }
                tb_printf(b, "%s_sum{thread=\"%d\"} %lld\n%s_count{thread=\"%d\"} %lld\n", name, i,
                          atomic_load(&h->sum_ms), name, i, atomic_load(&h->count));
        }
}

/* only_owned: skip slots this process does not own; restores happen only in
 * aggregation tasks, so their gauges skip source slots (agg_only). */
static void gauge_per_task(tbuf_t *b, rill_app_t *app, const char *name, const char *help,
                           size_t offset, int only_owned) {
        int agg_only = offset == OFF(restore_done) || offset == OFF(restore_total) ||
                       offset == OFF(held_by) || offset == OFF(held_back_ms);
        tb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
        for (int i = 0; i < app->nthreads; i++) {
                rill_metrics_t *m = &app->metrics[i];
                atomic_llong *v = *(atomic_llong **)((char *)m + offset);
                for (int s = 0; s < 2 * m->partitions; s++) {
                        if ((only_owned && !atomic_load(&m->owned[s])) ||
                                (agg_only && s < m->partitions))
                                continue;
                        int agg = s >= m->partitions;
                        const char *topic = agg && !app->keyed ? app->repartition_topic : app->input_topic;
                        tb_printf(b, "%s{thread=\"%d\",topic=\"%s\",partition=\"%d\",task=\"%s\"} %lld\n",
                                  name, i, topic, s % m->partitions, agg ? "aggregate" : "source",
                                  atomic_load(&v[s]));
                }
        }
}

static int metrics(rill_app_t *app, tbuf_t *b) {
        char err[512];
        tb_printf(b, "# HELP rill_up 1 while no stream thread failed\n# TYPE rill_up gauge\nrill_up %d\n",
                  !fatal_error(app, err, sizeof(err)));
        counter(b, app, "rill_records_processed_total", "Records consumed and processed", OFF(processed));
        counter(b, app, "rill_records_dead_lettered_total", "Records sent to the dead-letter topic",
                OFF(dead_lettered));
        counter(b, app, "rill_records_late_total", "Late records (dead-lettered with reason late)",
                OFF(late));
        counter(b, app, "rill_window_results_total", "Closed-window results committed", OFF(results));
        counter(b, app, "rill_commits_total", "Commit cycles committed", OFF(commits));
        counter(b, app, "rill_transaction_aborts_total", "Kafka transactions aborted", OFF(aborts));
        counter(b, app, "rill_thread_recoveries_total",
                "producer recreated in-process after a fatal transactional error", OFF(recoveries));
        counter(b, app, "rill_postgres_fenced_total",
                "Postgres commits refused by the epoch check (partition owned elsewhere)",
                OFF(pg_fenced));
        histogram(b, app, "rill_commit_latency_ms", "Commit cycle duration", OFF(commit_ms));
        histogram(b, app, "rill_postgres_write_latency_ms", "Postgres transaction duration", OFF(pg_ms));
        gauge_per_task(b, app, "rill_consumer_lag", "Records behind the high watermark", OFF(lag), 1);
        gauge_per_task(b, app, "rill_state_store_bytes", "Window store size (SST + memtables)",
                       OFF(store_bytes), 1);
        gauge_per_task(b, app, "rill_restore_records_done", "Changelog records restored (last restore)",
                       OFF(restore_done), 0);
        gauge_per_task(b, app, "rill_restore_records_total",
                       "Changelog records to restore (last restore, at most)", OFF(restore_total), 0);
        gauge_per_task(b, app, "rill_stream_time_ms",
                       "Event time: a source task's progress, an aggregation task's stream time "
                       "(the minimum over its sources)", OFF(stream_time), 1);
        gauge_per_task(b, app, "rill_stream_time_held_by_source",
                       "The source partition with the smallest progress: it holds the "
                       "aggregation task's windows back (-1 none)", OFF(held_by), 1);
        gauge_per_task(b, app, "rill_stream_time_held_back_ms",
                       "How far the slowest source is behind the fastest (-1: a source has not "
                       "reported yet)", OFF(held_back_ms), 1);
        return MHD_HTTP_OK;
}

/* ---- /query: answered here, or by the owner of the key's partition ------------------- */

enum { HERE_NONE, HERE_OWNED, HERE_RESTORING };

/* Where aggregation partition p is in this process; for a restore, how far
 * it got (*done of at most *total changelog records). */
static int here(rill_app_t *app, int32_t p, long long *done, long long *total) {
        int owned = 0;
        for (int i = 0; i < app->nthreads; i++) {
                rill_metrics_t *m = &app->metrics[i];
                if (p >= m->partitions)
                        continue;
                int slot = m->partitions + p;
                if (atomic_load(&m->restoring[slot])) {
                        *done = atomic_load(&m->restore_done[slot]);
                        *total = atomic_load(&m->restore_total[slot]);
                        return HERE_RESTORING;
                }
                owned |= atomic_load(&m->owned[slot]);
        }
        return owned ? HERE_OWNED : HERE_NONE;
}

/* Any aggregation task of this process restoring (keys whose partition
 * cannot be derived): @returns one such partition, or -1. */
static int32_t any_restoring(rill_app_t *app) {
        for (int i = 0; i < app->nthreads; i++) {
                rill_metrics_t *m = &app->metrics[i];
                for (int p = 0; p < m->partitions; p++)
                        if (atomic_load(&m->restoring[m->partitions + p]))
                                return p;
        }
        return -1;
}

/* A refusal the client may retry: 503 {"error": what and why, "reason": a
 * word for scripts (restoring, not_owner, rebalancing, owner_unknown,
 * owner_unreachable), "partition": the key's partition or -1}. */
static int refuse(tbuf_t *b, const char *reason, int32_t p, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int refuse(tbuf_t *b, const char *reason, int32_t p, const char *fmt, ...) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        rill_jbuf_reset(b);
        rill_jbuf_add(b, "{\"error\":", 9);
        rill_jbuf_string(b, msg, strlen(msg));
        rill_jbuf_printf(b, ",\"reason\":\"%s\",\"partition\":%d}\n", reason, (int)p);
        return MHD_HTTP_SERVICE_UNAVAILABLE;
}

static int refuse_restoring(rill_app_t *app, tbuf_t *b, int32_t p, long long done,
                            long long total) {
        return refuse(b, "restoring", p,
                      "restoring: partition %d of %s is being restored on instance %s (%lld of "
                      "at most %lld changelog records); an answer now could be stale (retry "
                      "when the worker's /readyz is 200)",
                      (int)p, app->keyed ? app->input_topic : app->repartition_topic,
                      app->process_id, done, total);
}

/* The key's partition is another member's: ask it, at most twice (the second
 * time after describing the group again, when the first answer showed the
 * description stale). The owner's answer is passed on as it is. */
static int forward(rill_http_t *h, const char *key, size_t key_len, int32_t p, tbuf_t *b,
                   int *retry) {
        rill_app_t *app = h->app;
        char errstr[512] = "", why[1024] = "";
        const char *reason = "owner_unknown";
        rill_jbuf_t path;
        rill_jbuf_init(&path, 8 * RILL_QUERY_KEY_MAX);
        rill_jbuf_add(&path, "/query?key=", 11);
        rill_peer_urlencode(&path, key, key_len);
        *retry = 1;
        for (int attempt = 0; attempt < 2; attempt++) {
                rill_owner_t ow;
                if (rill_owners_get(h->owners, p, attempt, &ow, errstr, sizeof(errstr))) {
                        reason = "owner_unknown";
                        snprintf(why, sizeof(why),
                                 "owner unknown: cannot describe group %.200s to find the owner of "
                                 "partition %d: %.400s (hint: is the broker reachable?)",
                                 app->app_id, (int)p, errstr);
                        continue;
                }
                if (ow.kind == RILL_OWNER_NONE) {
                        reason = "owner_unknown";
                        snprintf(why, sizeof(why),
                                 "owner unknown: no member of group %.200s owns partition %d now (a "
                                 "rebalance in progress, or no worker running); retry",
                                 app->app_id, (int)p);
                        continue;
                }
                if (ow.kind == RILL_OWNER_NO_HTTP) {
                        reason = "owner_unknown";
                        snprintf(why, sizeof(why),
                                 "owner unknown: partition %d is owned by member %.200s, which "
                                 "advertises no HTTP endpoint (hint: start every worker with "
                                 "--http-port)",
                                 (int)p, ow.member);
                        continue;
                }
                if (ow.kind == RILL_OWNER_SELF) { /* assigned here, the task not open yet */
                        long long done = 0, total = 0;
                        int st = here(app, p, &done, &total);
                        /* the cached description may be older than a
                         * rebalance that moved p away: describe again first
                         * (seen: a worker answered "rebalancing" for a
                         * partition a new member was already restoring) */
                        if (st == HERE_NONE && attempt == 0) {
                                reason = "rebalancing";
                                snprintf(why, sizeof(why),
                                         "rebalancing: partition %d is assigned to this instance "
                                         "(%s) but its task is not open yet; retry",
                                         (int)p, app->process_id);
                                continue;
                        }
                        rill_jbuf_free(&path);
                        if (st == HERE_RESTORING)
                                return refuse_restoring(app, b, p, done, total);
                        if (st == HERE_OWNED) {
                                *retry = 0;
                                return rill_query_answer(key, key_len, app->process_id,
                                                         h->lookup, h->lookup_opaque, b);
                        }
                        return refuse(b, "rebalancing", p,
                                      "rebalancing: partition %d is assigned to this instance "
                                      "(%s) but its task is not open yet; retry",
                                      (int)p, app->process_id);
                }
                int status = 0;
                if (path.failed || rill_peer_get(ow.host, ow.port, path.p, app->process_id,
                                                 RILL_QUERY_FORWARD_MS, &status, b, errstr,
                                                 sizeof(errstr))) {
                        reason = "owner_unreachable";
                        snprintf(why, sizeof(why),
                                 "owner unreachable: partition %d is owned by member %.200s at "
                                 "%.200s:%d, which did not answer: %.400s",
                                 (int)p, ow.member, ow.host, ow.port,
                                 path.failed ? "key too large to forward" : errstr);
                        continue;
                }
                if (status == MHD_HTTP_SERVICE_UNAVAILABLE && b->p &&
                    strstr(b->p, "\"reason\":\"not_owner\"")) {
                        reason = "rebalancing";
                        snprintf(why, sizeof(why),
                                 "rebalancing: member %.200s at %.200s:%d no longer owns partition %d; "
                                 "retry",
                                 ow.member, ow.host, ow.port, (int)p);
                        continue;
                }
                rill_log(RILL_LOG_DEBUG, "query_forwarded", "partition=%d owner=%s:%d status=%d",
                         (int)p, ow.host, ow.port, status);
                *retry = status == MHD_HTTP_SERVICE_UNAVAILABLE;
                rill_jbuf_free(&path);
                return status;
        }
        rill_jbuf_free(&path);
        return refuse(b, reason, p, "%s", why);
}

/* A key whose partition cannot be derived (keyed input, kafka.partitioner):
 * this process's stores, then every other member's until one has it, all
 * within RILL_QUERY_FANOUT_MS. A key lives in one partition, so the first
 * answer with windows is the answer. */
static int fan_out(rill_http_t *h, const char *key, size_t key_len, int forwarded, tbuf_t *b,
                   int *retry) {
        rill_app_t *app = h->app;
        int status = rill_query_answer(key, key_len, app->process_id, h->lookup, h->lookup_opaque, b);
        int32_t rp = any_restoring(app);
        if (status == 404 && rp >= 0) {
                *retry = 1;
                return refuse_restoring(app, b, rp, 0, 0);
        }
        if (status != 404 || forwarded || !h->owners)
                return status;
        char errstr[512] = "", why[1024] = "";
        rill_owner_t peers[RILL_OWNERS_PEERS_MAX];
        int n = rill_owners_peers(h->owners, peers, RILL_OWNERS_PEERS_MAX, errstr, sizeof(errstr));
        if (n < 0) {
                *retry = 1;
                return refuse(b, "owner_unknown", -1,
                              "owner unknown: cannot describe group %.200s: %.400s", app->app_id,
                              errstr);
        }
        rill_jbuf_t path, tmp;
        rill_jbuf_init(&path, 8 * RILL_QUERY_KEY_MAX);
        rill_jbuf_add(&path, "/query?key=", 11);
        rill_peer_urlencode(&path, key, key_len);
        rill_jbuf_init(&tmp, RILL_QUERY_BODY_MAX);
        int64_t deadline = rill_now_mono_ms() + RILL_QUERY_FANOUT_MS;
        for (int i = 0; i < n && !path.failed; i++) {
                int64_t left = deadline - rill_now_mono_ms();
                int st = 0;
                if (left <= 0) {
                        snprintf(why, sizeof(why),
                                 "owner unreachable: %d of %d other members not asked within %d ms",
                                 n - i, n, RILL_QUERY_FANOUT_MS);
                        break;
                }
                if (rill_peer_get(peers[i].host, peers[i].port, path.p, app->process_id,
                                  left < RILL_QUERY_FORWARD_MS ? (int)left : RILL_QUERY_FORWARD_MS,
                                  &st, &tmp, errstr, sizeof(errstr))) {
                        snprintf(why, sizeof(why), "owner unreachable: member %.200s: %.400s",
                                 peers[i].member, errstr);
                        continue;
                }
                if (st == 200) {
                        rill_jbuf_free(b);
                        *b = tmp;
                        rill_jbuf_free(&path);
                        return st;
                }
                if (st != 404)
                        snprintf(why, sizeof(why), "member %.200s at %.200s:%d answered %d: %.300s",
                                 peers[i].member, peers[i].host, peers[i].port, st,
                                 tmp.p ? tmp.p : "");
        }
        rill_jbuf_free(&tmp);
        rill_jbuf_free(&path);
        if (why[0]) { /* a member that may hold the key did not say it has none */
                *retry = 1;
                return refuse(b, "owner_unreachable", -1, "%s", why);
        }
        return status;
}

/* Route one valid query: answer it here when this process owns the key's
 * partition, refuse it while that partition restores, forward it to the
 * owner otherwise -- unless it was forwarded to us already (at most one hop). */
static int route(rill_http_t *h, const char *key, size_t key_len, const char *forwarded_by,
                 tbuf_t *b, int *retry) {
        rill_app_t *app = h->app;
        if (!key || !key_len || key_len > RILL_QUERY_KEY_MAX) /* 400, with the reason */
                return rill_query_answer(key, key_len, app->process_id, h->lookup, h->lookup_opaque, b);
        int32_t p = rill_owners_key_partition(app, key, key_len);
        if (p < 0)
                return fan_out(h, key, key_len, forwarded_by != NULL, b, retry);
        long long done = 0, total = 0;
        int st = here(app, p, &done, &total);
        if (st == HERE_RESTORING) {
                *retry = 1;
                return refuse_restoring(app, b, p, done, total);
        }
        if (st == HERE_OWNED || !h->owners)
                return rill_query_answer(key, key_len, app->process_id, h->lookup, h->lookup_opaque, b);
        if (forwarded_by) {
                *retry = 1;
                return refuse(b, "not_owner", p,
                              "not owner: instance %s does not own partition %d (the query came "
                              "forwarded from %.128s and is not forwarded again); retry",
                              app->process_id, (int)p, forwarded_by);
        }
        return forward(h, key, key_len, p, b, retry);
}

/* *retry is set when the answer is a 503 that the client should retry. */
static int query(rill_http_t *h, struct MHD_Connection *conn, tbuf_t *b, int *retry) {
        const char *key = NULL;
        size_t key_len = 0;
        if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, "key", 3, &key,
                                          &key_len) != MHD_YES)
                key = NULL;
        const char *fwd = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, RILL_PEER_FORWARDED);
        if (atomic_fetch_add(&h->queries, 1) >= QUERIES_MAX) {
                atomic_fetch_sub(&h->queries, 1);
                rill_jbuf_printf(b, "{\"error\":\"busy: %d queries are running, the most this "
                                    "process answers at once (retry after %s s)\",\"reason\":"
                                    "\"busy\",\"partition\":-1}\n",
                                 QUERIES_MAX, RETRY_AFTER_S);
                *retry = 1;
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        }
        int status = route(h, key, key_len, fwd, b, retry);
        atomic_fetch_sub(&h->queries, 1);
        return status;
}

/* GET /tasks: every task this process owns, with its event time and, for
 * an aggregation task of unkeyed input, the source partition that holds its
 * windows back and by how much: why windows are not closing. */
static int tasks(rill_app_t *app, tbuf_t *b) {
        tb_printf(b, "{\"tasks\":[");
        int n = 0;
        for (int i = 0; i < app->nthreads; i++) {
                rill_metrics_t *m = &app->metrics[i];
                for (int s = 0; s < 2 * m->partitions; s++) {
                        if (!atomic_load(&m->owned[s]))
                                continue;
                        int agg = s >= m->partitions;
                        long long st = atomic_load(&m->stream_time[s]);
                        tb_printf(b, "%s{\"thread\":%d,\"kind\":\"%s\",\"partition\":%d,"
                                     "\"stream_time_ms\":",
                                  n++ ? "," : "", i, agg ? "aggregate" : "source",
                                  s % m->partitions);
                        if (st == INT64_MIN)
                                tb_printf(b, "null");
                        else
                                tb_printf(b, "%lld", st);
                        tb_printf(b, ",\"lag\":%lld", atomic_load(&m->lag[s]));
                        if (agg && !app->keyed)
                                tb_printf(b, ",\"held_by_source\":%lld,\"held_back_ms\":%lld",
                                          atomic_load(&m->held_by[s]),
                                          atomic_load(&m->held_back_ms[s]));
                        tb_printf(b, "}");
                }
        }
        tb_printf(b, "]}\n");
        return MHD_HTTP_OK;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state) {
        (void)version, (void)upload, (void)upload_size, (void)state;
        rill_http_t *h = cls;
        rill_app_t *app = h->app;
        tbuf_t b;
        int status, retry = 0;
        const char *type = "text/plain; charset=utf-8";
        rill_jbuf_init(&b, TEXT_MAX);
        if (strcmp(method, "GET")) {
                tb_printf(&b, "only GET\n");
                status = MHD_HTTP_METHOD_NOT_ALLOWED;
        } else if (!strcmp(url, "/healthz")) {
                status = health(app, &b);
        } else if (!strcmp(url, "/readyz")) {
                status = ready(app, &b);
        } else if (!strcmp(url, "/metrics")) {
                status = metrics(app, &b);
                type = "text/plain; version=0.0.4";
        } else if (!strcmp(url, "/tasks")) {
                status = tasks(app, &b);
                type = "application/json";
        } else if (!strcmp(url, "/query")) {
                b.limit = RILL_QUERY_BODY_MAX;
                status = query(h, conn, &b, &retry);
                type = "application/json";
        } else {
                tb_printf(&b, "not found: try /healthz, /readyz, /metrics, /tasks, /query?key=\n");
                status = MHD_HTTP_NOT_FOUND;
        }
        if (b.failed) { /* out of memory (or a /metrics past TEXT_MAX) */
                rill_jbuf_free(&b);
                static const char oom[] = "internal error: cannot build the answer\n";
                struct MHD_Response *r = MHD_create_response_from_buffer(
                        sizeof(oom) - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
                if (!r)
                        return MHD_NO;
                enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, r);
                MHD_destroy_response(r);
                return ret;
        }
        struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                rill_jbuf_free(&b);
                return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", type);
        if (retry)
                MHD_add_response_header(r, "Retry-After", RETRY_AFTER_S);
        enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
        MHD_destroy_response(r);
        return ret;
}

rill_http_t *rill_http_start(rill_app_t *app, int port, rill_query_lookup_fn lookup,
                             void *lookup_opaque, char *errstr, size_t errstr_size) {
        rill_http_t *h = calloc(1, sizeof(*h));
        h->app = app;
        h->lookup = lookup;
        h->lookup_opaque = lookup_opaque;
        atomic_init(&h->queries, 0);
        h->owners = rill_owners_new(app, errstr, errstr_size);
        if (!h->owners) {
                free(h);
                return NULL;
        }
        /* a thread per connection: a slow query never delays /healthz */
        h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                             MHD_USE_ERROR_LOG,
                                     (uint16_t)port, NULL, NULL, handle, h,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTIONS_MAX,
                                     MHD_OPTION_END);
        if (!h->daemon) {
                snprintf(errstr, errstr_size,
                         "cannot listen for HTTP on port %d (hint: is the port in use? set "
                         "--http-port)", port);
                rill_owners_destroy(h->owners);
                free(h);
                return NULL;
        }
        return h;
}

void rill_http_stop(rill_http_t *h) {
        if (!h)
                return;
        MHD_stop_daemon(h->daemon);
        rill_owners_destroy(h->owners);
        free(h);
}
