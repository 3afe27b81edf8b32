/*
 * http.c -- the worker process's HTTP endpoint (libmicrohttpd, its own
 * polling thread):
 *   GET /healthz   200 while no stream thread failed fatally, else 503
 *   GET /readyz    200 once every thread joined the group and no task is
 *                  restoring (Kubernetes readiness: not ready during restore)
 *   GET /metrics   Prometheus text format
 *   GET /query?key=K  the committed windows of key K held by this process
 *                  (interactive queries): 200 with JSON, 404 when another
 *                  process owns the key's partition
 *
 * @locality the handler runs on libmicrohttpd's thread. It reads the stream
 * threads' metrics (atomics), the app's fatal slot (under its lock) and, for
 * queries, the task stores under each worker's task lock.
 */
#include "internal.h"
#include "json.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rill_http {
        struct MHD_Daemon *daemon;
        rill_app_t *app;
};

/* ---- a growable text buffer ------------------------------------------------------ */

typedef struct tbuf {
        char *p;
        size_t len, size;
} tbuf_t;

static void tb_printf(tbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(tbuf_t *b, const char *fmt, ...) {
        for (;;) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
                va_end(ap);
                if (n >= 0 && (size_t)n < b->size - b->len) {
                        b->len += (size_t)n;
                        return;
                }
                b->size = b->size * 2 + (size_t)(n > 0 ? n : 0) + 256;
                b->p = realloc(b->p, b->size);
        }
}

#define OFF(field) offsetof(rill_metrics_t, field)

/* ---- the endpoints ------------------------------------------------------------------ */

static int fatal_error(rill_app_t *app, char *buf, size_t size) {
        pthread_mutex_lock(&app->fatal_lock);
        int failed = app->fatal[0] != 0;
        snprintf(buf, size, "%s", app->fatal);
        pthread_mutex_unlock(&app->fatal_lock);
        return failed;
}

static int health(rill_app_t *app, tbuf_t *b) {
        char err[512];
        if (fatal_error(app, err, sizeof(err))) {
                tb_printf(b, "failed: %s\n", err);
                return MHD_HTTP_SERVICE_UNAVAILABLE;
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
        int agg_only = offset == OFF(restore_done) || offset == OFF(restore_total);
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
        return MHD_HTTP_OK;
}

static int query(rill_app_t *app, const char *key, tbuf_t *b) {
        char out[65536] = "", kq[2200];
        size_t len = 0;
        int found = 0;
        if (!key || !*key || strlen(key) > 1024) {
                tb_printf(b, "{\"error\":\"give the key as /query?key=<key> (at most 1024 bytes)\"}\n");
                return MHD_HTTP_BAD_REQUEST;
        }
        for (int i = 0; i < app->nthreads && app->workers; i++) {
                int n = rill_worker_query(app->workers[i], key, strlen(key), out, sizeof(out), &len);
                if (n < 0) {
                        tb_printf(b, "{\"error\":\"state store read failed\"}\n");
                        return MHD_HTTP_INTERNAL_SERVER_ERROR;
                }
                found += n;
        }
        rill_json_string(key, strlen(key), kq, sizeof(kq));
        tb_printf(b, "{\"key\":%s,\"instance\":\"%s\",\"windows\":[%s]}\n", kq, app->process_id, out);
        return found ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state) {
        (void)version, (void)upload, (void)upload_size, (void)state;
        rill_app_t *app = cls;
        tbuf_t b = {malloc(4096), 0, 4096};
        int status;
        const char *type = "text/plain; charset=utf-8";
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
        } else if (!strcmp(url, "/query")) {
                status = query(app, MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "key"), &b);
                type = "application/json";
        } else {
                tb_printf(&b, "not found: try /healthz, /readyz, /metrics, /query?key=\n");
                status = MHD_HTTP_NOT_FOUND;
        }
        struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", type);
        enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
        MHD_destroy_response(r);
        return ret;
}

rill_http_t *rill_http_start(rill_app_t *app, int port, char *errstr, size_t errstr_size) {
        rill_http_t *h = calloc(1, sizeof(*h));
        h->app = app;
        h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                                     (uint16_t)port, NULL, NULL, handle, app,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
        if (!h->daemon) {
                snprintf(errstr, errstr_size,
                         "cannot listen for HTTP on port %d (hint: is the port in use? set "
                         "--http-port)", port);
                free(h);
                return NULL;
        }
        return h;
}

void rill_http_stop(rill_http_t *h) {
        if (!h)
                return;
        MHD_stop_daemon(h->daemon);
        free(h);
}
