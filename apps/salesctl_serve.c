/*
 * salesctl_serve.c -- `salesctl serve`: the live web dashboard.
 *
 *   salesctl serve [--port 8080] [--bind 127.0.0.1] [--workers HOST:PORT,...]
 *                  [--pg-dsn DSN|none] [--pg-table aggregated_sales] [--interval-ms 1000]
 *
 * One page (apps/dashboard/www, compiled into the program: no CDN, it works
 * offline) that polls /api/state and draws the total per seller per window of
 * the last hour (Postgres), the running totals of the open windows
 * (interactive queries, the workers' /query) and throughput, lag and dead
 * letters over time (the workers' /metrics).
 *
 * Two threads. The main thread is the collector: every interval it reads
 * Postgres (one parameterised SELECT, the table name escaped as an
 * identifier), asks the workers, and builds one JSON snapshot, which it swaps
 * in under `lock`. libmicrohttpd's one polling thread answers requests
 * (dash_route, apps/dashboard/dash.c) from memory: the assets, or a copy of
 * the snapshot taken under `lock`. So a request never waits for Postgres or
 * a worker, and a slow or stuck worker only makes the data older.
 *
 * Bounds: at most CONNECTIONS_MAX connections (PER_IP_MAX from one address),
 * each closed after TIMEOUT_S idle seconds; a request's line and headers in
 * REQUEST_MEMORY bytes (libmicrohttpd answers 431/414 beyond); no request
 * body; Postgres rows ROWS_MAX, statements STATEMENT_TIMEOUT_MS; worker
 * answers BODY_MAX bytes in HTTP_TIMEOUT_MS; open windows of SELLERS_MAX
 * sellers, within QUERY_BUDGET_MS a cycle; HISTORY_MAX samples of metrics.
 * The password never comes from a flag: a DSN holding one is refused, libpq
 * reads PGPASSWORD or PGPASSFILE.
 *
 * It listens on 127.0.0.1 unless --bind says otherwise: the dashboard has no
 * authentication, like the workers' own HTTP endpoint.
 */
#include "dash.h"
#include "pgsink.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONNECTIONS_MAX 32
#define PER_IP_MAX 16
#define TIMEOUT_S 10
#define REQUEST_MEMORY (32 * 1024)
#define ROWS_MAX 5000          /* windows of the last hour sent to the page */
#define HOUR_S 3600
#define STATEMENT_TIMEOUT "3000"
#define BODY_MAX (8u << 20)     /* a worker's /metrics or /query answer */
#define HTTP_TIMEOUT_MS 2000L
#define CONNECT_TIMEOUT_MS 500L
#define SELLERS_MAX 64
#define QUERY_BUDGET_MS 2000
#define HISTORY_MAX 600
#define PG_RETRY_S 5

extern const dash_asset_t dash_assets[]; /* generated from apps/dashboard/www (CMakeLists.txt) */
extern const size_t dash_nassets;

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s, stop = 1; }

typedef struct sample {
        long long t_ms, lag, dead;
        double processed_s, results_s; /* < 0: unknown */
        int have_lag;
} sample_t;

typedef struct serve {
        /* shared with the HTTP thread */
        pthread_mutex_t lock;
        char *snap;
        size_t snap_len;
        /* the collector's own (main thread) */
        const char *workers, *pg_dsn, *pg_table;
        long interval_ms;
        long long seq;
        CURL *curl;
        PGconn *pg;
        time_t pg_retry;
        char pg_err[512];
        json_t *owner; /* seller -> the worker that answered its last query */
        sample_t hist[HISTORY_MAX];
        int hist_n, hist_at;
        long long prev_processed, prev_results;
        struct timespec prev_at;
        int have_prev;
} serve_t;

static long long wall_ms(void) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static long long mono_ms(const struct timespec *t) { return (long long)t->tv_sec * 1000 + t->tv_nsec / 1000000; }

/* ---- HTTP to the workers (collector thread) ------------------------------------------ */

typedef struct buf {
        char *p;
        size_t len;
} buf_t;

static size_t collect(char *data, size_t n, size_t m, void *opaque) {
        buf_t *b = opaque;
        size_t add = n * m;
        if (b->len + add > BODY_MAX)
                return 0; /* aborts the transfer: too large */
        char *p = realloc(b->p, b->len + add + 1);
        if (!p)
                return 0;
        memcpy(p + b->len, data, add);
        b->p = p, b->len += add, b->p[b->len] = '\0';
        return add;
}

/* GET http://hostport/path. @returns the HTTP status (0: unreachable or too
 * large); b->p is the body (caller frees). */
static long http_get(CURL *c, const char *hostport, const char *path, buf_t *b) {
        char url[1200];
        b->p = NULL, b->len = 0;
        if (snprintf(url, sizeof(url), "http://%s%s", hostport, path) >= (int)sizeof(url))
                return 0;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, HTTP_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        long status = 0;
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        return status;
}

/* ---- Postgres (collector thread) ------------------------------------------------------- */

static void pg_error(serve_t *sv, const char *what, const char *msg) {
        snprintf(sv->pg_err, sizeof(sv->pg_err), "%s: %s", what, msg ? msg : "?");
        sv->pg_err[strcspn(sv->pg_err, "\n")] = '\0';
}

static int pg_connect(serve_t *sv) {
        if (sv->pg && PQstatus(sv->pg) == CONNECTION_OK)
                return 0;
        if (time(NULL) < sv->pg_retry)
                return -1;
        if (sv->pg)
                PQfinish(sv->pg);
        /* ours first, the DSN after them overrides; statement_timeout bounds each poll */
        const char *kw[] = {"connect_timeout", "tcp_user_timeout", "keepalives_idle", "application_name",
                            "options", "dbname", NULL};
        const char *val[] = {"3", "5000", "5", "salesctl-serve", "-c statement_timeout=" STATEMENT_TIMEOUT,
                             sv->pg_dsn, NULL};
        sv->pg = PQconnectdbParams(kw, val, 1);
        if (PQstatus(sv->pg) != CONNECTION_OK) {
                char what[300];
                snprintf(what, sizeof(what), "cannot connect to Postgres at %s:%s", PQhost(sv->pg) ?: "?",
                         PQport(sv->pg) ?: "?");
                pg_error(sv, what, PQerrorMessage(sv->pg));
                sv->pg_retry = time(NULL) + PG_RETRY_S;
                return -1;
        }
        return 0;
}

/* The windows of the last hour, oldest first, into a new array; *truncated
 * when there were more than ROWS_MAX (then the newest ROWS_MAX). NULL with
 * sv->pg_err set when Postgres cannot be read. */
static json_t *pg_windows(serve_t *sv, int *truncated) {
        *truncated = 0;
        if (!sv->pg_dsn || !*sv->pg_dsn || !strcmp(sv->pg_dsn, "none")) {
                snprintf(sv->pg_err, sizeof(sv->pg_err), "not configured (pass --pg-dsn or set RILL_PG_DSN)");
                return NULL;
        }
        if (pg_connect(sv))
                return NULL;
        char *table = PQescapeIdentifier(sv->pg, sv->pg_table, strlen(sv->pg_table));
        if (!table) {
                pg_error(sv, "cannot quote the table name", PQerrorMessage(sv->pg));
                return NULL;
        }
        char sql[1024], secs[16], limit[16];
        snprintf(sql, sizeof(sql),
                 "SELECT seller_id, (extract(epoch FROM window_start) * 1000)::bigint,"
                 " (extract(epoch FROM window_end) * 1000)::bigint, total_amount_usd, sales_count"
                 " FROM %s WHERE window_end > now() - make_interval(secs => $1::int)"
                 " ORDER BY window_start DESC, seller_id LIMIT $2::int",
                 table);
        PQfreemem(table);
        snprintf(secs, sizeof(secs), "%d", HOUR_S);
        snprintf(limit, sizeof(limit), "%d", ROWS_MAX + 1);
        const char *params[] = {secs, limit};
        PGresult *r = PQexecParams(sv->pg, sql, 2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                char what[300];
                snprintf(what, sizeof(what), "cannot read table %s", sv->pg_table);
                pg_error(sv, what, PQresultErrorMessage(r));
                PQclear(r);
                return NULL;
        }
        int n = PQntuples(r);
        if (n > ROWS_MAX)
                n = ROWS_MAX, *truncated = 1;
        json_t *a = json_array();
        for (int i = n - 1; i >= 0; i--) {
                json_t *seller = json_string(PQgetvalue(r, i, 0));
                if (!seller) /* not UTF-8 (a SQL_ASCII database): shown, marked */
                        seller = json_string("(not UTF-8)");
                json_array_append_new(a, json_pack("{s:o,s:I,s:I,s:I,s:I}", "seller", seller, "start_ms",
                                                   (json_int_t)atoll(PQgetvalue(r, i, 1)), "end_ms",
                                                   (json_int_t)atoll(PQgetvalue(r, i, 2)), "total",
                                                   (json_int_t)atoll(PQgetvalue(r, i, 3)), "count",
                                                   (json_int_t)atoll(PQgetvalue(r, i, 4))));
        }
        PQclear(r);
        sv->pg_err[0] = '\0';
        return a;
}

/* ---- the workers (collector thread) ---------------------------------------------------- */

static int count_workers(const char *list) {
        int n = 0;
        for (const char *p = list; p && *p; p++)
                if (p == list || p[-1] == ',')
                        n += *p != ',';
        return n;
}

/* The open window of one seller from the worker that owns it: the one that
 * answered last time first, then the others. */
static json_t *open_window(serve_t *sv, const char *seller) {
        char *esc = curl_easy_escape(sv->curl, seller, 0), path[4200];
        int fits = esc && snprintf(path, sizeof(path), "/query?key=%s", esc) < (int)sizeof(path);
        curl_free(esc);
        if (!fits)
                return NULL;
        /* candidates: the last owner first, then the list in order */
        char prefer[256] = "";
        snprintf(prefer, sizeof(prefer), "%s", json_string_value(json_object_get(sv->owner, seller)) ?: "");
        size_t plen = strlen(prefer) + 1, llen = strlen(sv->workers) + 1;
        char *list = malloc(plen + llen), *save = NULL;
        memcpy(list, prefer, plen);
        list[plen - 1] = ',';
        memcpy(list + plen, sv->workers, llen);
        json_t *found = NULL;
        for (char *w = strtok_r(list, ",", &save); w && !found; w = strtok_r(NULL, ",", &save)) {
                if (w != list && *prefer && !strcmp(w, prefer))
                        continue; /* asked first already */
                buf_t b;
                dash_open_t o;
                if (http_get(sv->curl, w, path, &b) == 200 && dash_query_parse(b.p, b.len, &o) == 1) {
                        found = json_pack("{s:s,s:I,s:I,s:I,s:I,s:s}", "seller", seller, "start_ms",
                                          (json_int_t)o.start_ms, "end_ms", (json_int_t)o.end_ms, "total",
                                          (json_int_t)o.sum, "count", (json_int_t)o.count, "worker", w);
                        json_object_set_new(sv->owner, seller, json_string(w));
                }
                free(b.p);
        }
        free(list);
        return found;
}

static json_t *open_windows(serve_t *sv, json_t *windows, const struct timespec *start) {
        json_t *out = json_array(), *asked = json_object(), *w;
        if (json_object_size(sv->owner) > 4 * SELLERS_MAX)
                json_object_clear(sv->owner); /* bounded: re-learnt from the next answers */
        size_t i = sv->workers && *sv->workers ? json_array_size(windows) : 0;
        /* newest windows first: the sellers active now */
        for (; i-- > 0 && json_object_size(asked) < SELLERS_MAX;) {
                w = json_array_get(windows, i);
                const char *seller = json_string_value(json_object_get(w, "seller"));
                if (!seller || json_object_get(asked, seller))
                        continue;
                json_object_set_new(asked, seller, json_true());
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (mono_ms(&now) - mono_ms(start) > QUERY_BUDGET_MS)
                        break; /* the rest next cycle; the page shows what it has */
                json_t *o = open_window(sv, seller);
                if (o)
                        json_array_append_new(out, o);
        }
        json_decref(asked);
        return out;
}

/* One sample of the summed metrics into the history; *up the workers that answered. */
static void poll_metrics(serve_t *sv, int *up) {
        *up = 0;
        if (!sv->workers || !*sv->workers)
                return;
        long long processed = 0, results = 0, lag = 0, dead = 0;
        char *list = strdup(sv->workers), *save = NULL;
        int n = 0;
        for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                buf_t b;
                dash_metrics_t m;
                n++;
                if (http_get(sv->curl, w, "/metrics", &b) == 200 && !dash_metrics_parse(b.p, b.len, &m)) {
                        (*up)++;
                        processed += m.processed, results += m.results, lag += m.lag, dead += m.dead;
                }
                free(b.p);
        }
        free(list);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        sample_t s = {.t_ms = wall_ms(), .lag = lag, .dead = dead, .processed_s = -1, .results_s = -1,
                      .have_lag = *up == n};
        double dt = (double)(mono_ms(&now) - mono_ms(&sv->prev_at)) / 1000.0;
        /* a rate only between two complete samples; a restarted worker's counters start over */
        if (*up == n && sv->have_prev && dt > 0.05) {
                s.processed_s = processed >= sv->prev_processed ? (double)(processed - sv->prev_processed) / dt : -1;
                s.results_s = results >= sv->prev_results ? (double)(results - sv->prev_results) / dt : -1;
        }
        sv->have_prev = *up == n;
        sv->prev_processed = processed, sv->prev_results = results, sv->prev_at = now;
        sv->hist[sv->hist_at] = s;
        sv->hist_at = (sv->hist_at + 1) % HISTORY_MAX;
        if (sv->hist_n < HISTORY_MAX)
                sv->hist_n++;
}

static json_t *history(const serve_t *sv) {
        json_t *t = json_array(), *p = json_array(), *r = json_array(), *l = json_array(), *d = json_array();
        for (int k = 0; k < sv->hist_n; k++) {
                const sample_t *s = &sv->hist[(sv->hist_at - sv->hist_n + k + HISTORY_MAX) % HISTORY_MAX];
                json_array_append_new(t, json_integer(s->t_ms));
                json_array_append_new(p, s->processed_s < 0 ? json_null() : json_real(s->processed_s));
                json_array_append_new(r, s->results_s < 0 ? json_null() : json_real(s->results_s));
                json_array_append_new(l, s->have_lag ? json_integer(s->lag) : json_null());
                json_array_append_new(d, s->have_lag ? json_integer(s->dead) : json_null());
        }
        return json_pack("{s:o,s:o,s:o,s:o,s:o}", "t_ms", t, "processed_per_s", p, "results_per_s", r, "lag", l,
                         "dead_letters", d);
}

/* ---- the snapshot ------------------------------------------------------------------------ */

static void collect_once(serve_t *sv) {
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int truncated = 0, up = 0;
        json_t *windows = pg_windows(sv, &truncated);
        if (!windows)
                windows = json_array();
        json_t *open = open_windows(sv, windows, &start);
        poll_metrics(sv, &up);
        json_t *snap = json_pack(
            "{s:I,s:I,s:i,s:I,s:{s:s,s:o},s:o,s:b,s:o,s:{s:s,s:i,s:i},s:o}", "seq", (json_int_t)++sv->seq,
            "now_ms", (json_int_t)wall_ms(), "interval_ms", (int)sv->interval_ms, "hour_from_ms",
            (json_int_t)(wall_ms() - HOUR_S * 1000LL), "postgres", "table", sv->pg_table, "error",
            sv->pg_err[0] ? json_string(sv->pg_err) : json_null(), "windows", windows, "windows_truncated",
            truncated, "open", open, "workers", "list", sv->workers ? sv->workers : "", "up", up, "n",
            count_workers(sv->workers), "history", history(sv));
        char *text = snap ? json_dumps(snap, JSON_COMPACT) : NULL;
        json_decref(snap);
        if (!text) { /* out of memory, or a string jansson refused: keep the last one */
                fprintf(stderr, "salesctl serve: cannot build the snapshot; the page keeps the previous one\n");
                return;
        }
        pthread_mutex_lock(&sv->lock);
        free(sv->snap);
        sv->snap = text, sv->snap_len = strlen(text);
        pthread_mutex_unlock(&sv->lock);
}

/* ---- the HTTP side --------------------------------------------------------------------- */

/* dash_snapshot_fn. @locality the HTTP thread. @locks sv->lock, briefly. */
static char *snapshot_copy(void *opaque, size_t *len) {
        serve_t *sv = opaque;
        char *p = NULL;
        pthread_mutex_lock(&sv->lock);
        if (sv->snap && (p = malloc(sv->snap_len + 1))) {
                memcpy(p, sv->snap, sv->snap_len + 1);
                *len = sv->snap_len;
        }
        pthread_mutex_unlock(&sv->lock);
        return p;
}

/* @locality libmicrohttpd's polling thread. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **state) {
        (void)version, (void)upload, (void)state;
        /* a body is refused before it is read: announced, or already arriving */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        size_t body = *upload_size + (te != NULL) + (cl && strcmp(cl, "0"));
        dash_reply_t r;
        dash_route(method, url, body, dash_assets, dash_nassets, snapshot_copy, cls, &r);
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            r.len, (void *)r.body, r.owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                if (r.owned)
                        free((void *)r.body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, r.cache);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; style-src 'self'; frame-ancestors 'none'");
        if (r.status == 405)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r.status, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* ---- the command ------------------------------------------------------------------------- */

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
        char *end;
        long v = strtol(s, &end, 10);
        if (!*s || *end || v < lo || v > hi) {
                fprintf(stderr, "salesctl: %s %s is not a number in %ld .. %ld\n", flag, s, lo, hi);
                return -1;
        }
        *out = v;
        return 0;
}

int cmd_serve(int argc, char **argv) {
        serve_t sv = {.workers = getenv("RILL_WORKERS"), .pg_dsn = getenv("RILL_PG_DSN"),
                      .pg_table = "aggregated_sales", .interval_ms = 1000};
        const char *bind = "127.0.0.1";
        long port = 8080;
        for (int i = 0; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!strcmp(a, "--port") && v) {
                        if (parse_long(a, v, 0, 65535, &port))
                                return 2;
                } else if (!strcmp(a, "--interval-ms") && v) {
                        if (parse_long(a, v, 200, 60000, &sv.interval_ms))
                                return 2;
                } else if (!strcmp(a, "--bind") && v)
                        bind = v;
                else if (!strcmp(a, "--workers") && v)
                        sv.workers = v;
                else if (!strcmp(a, "--pg-dsn") && v)
                        sv.pg_dsn = v;
                else if (!strcmp(a, "--pg-table") && v)
                        sv.pg_table = v;
                else {
                        fprintf(stderr, "salesctl: unknown serve option %s (see salesctl --help)\n", a);
                        return 2;
                }
                i++;
        }
        char err[512];
        if (sv.pg_dsn && *sv.pg_dsn && strcmp(sv.pg_dsn, "none") &&
            rill_pgsink_check_dsn(sv.pg_dsn, err, sizeof(err))) {
                fprintf(stderr, "salesctl: %s\n", err);
                return 2;
        }
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, bind, &addr.sin_addr) != 1) {
                fprintf(stderr, "salesctl: --bind %s is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)\n", bind);
                return 2;
        }
        pthread_mutex_init(&sv.lock, NULL);
        sv.owner = json_object();
        curl_global_init(CURL_GLOBAL_DEFAULT);
        sv.curl = curl_easy_init();
        collect_once(&sv); /* the page has data from its first request */
        struct MHD_Daemon *d = MHD_start_daemon(
            MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, handle, &sv,
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTIONS_MAX,
            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)REQUEST_MEMORY, MHD_OPTION_END);
        int rc = 0;
        if (!d) {
                fprintf(stderr, "salesctl: cannot listen on %s:%ld (hint: is the port in use? pass --port N)\n", bind,
                        port);
                rc = 1;
        } else {
                const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
                printf("salesctl serve: dashboard at http://%s:%u/ (Postgres table %s%s%s; workers %s)\n", bind,
                       info ? info->port : (unsigned)port, sv.pg_table, sv.pg_err[0] ? ": " : "", sv.pg_err,
                       sv.workers && *sv.workers ? sv.workers : "none: pass --workers HOST:PORT,...");
                fflush(stdout);
                signal(SIGINT, on_signal);
                signal(SIGTERM, on_signal);
                signal(SIGPIPE, SIG_IGN);
                while (!stop) {
                        for (long slept = 0; slept < sv.interval_ms && !stop; slept += 100)
                                nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
                        if (!stop)
                                collect_once(&sv);
                }
                MHD_stop_daemon(d);
        }
        if (sv.pg)
                PQfinish(sv.pg);
        curl_easy_cleanup(sv.curl);
        curl_global_cleanup();
        json_decref(sv.owner);
        free(sv.snap);
        pthread_mutex_destroy(&sv.lock);
        return rc;
}
