/*
 * salesctl -- watch and query the sales aggregation.
 *
 *   salesctl watch [--bootstrap-servers B] [--topic aggregated-sales] [--once]
 *                  [--workers HOST:PORT,...] [--pg-dsn DSN|none] [--pg-table T]
 *                  [--input-topic sales-usd]
 *       A live table: per seller the latest closed windows (read_committed
 *       from the output topic) with their totals and counts, whether Postgres
 *       holds the same total and count, and the open window's running total
 *       (interactive queries, /query of the workers); then one status line
 *       from the workers' /metrics (events/s in from the input topic's growth):
 *       events/s in, results/s out, lag, dead
 *       letters. On a terminal the table is redrawn in place (ANSI escapes);
 *       piped, it writes plain lines: one `result ...` line per committed
 *       result and a `status ...` line. --once reads to the end, prints the
 *       table and exits. Environment: RILL_WORKERS, RILL_PG_DSN.
 *   salesctl query SELLER [--workers HOST:PORT[,...]] [--bootstrap-servers B]
 *                  [--application-id A]
 *       The running totals of SELLER's open windows. Any worker answers for
 *       any seller (it forwards to the owner of the seller's partition), so
 *       one address is enough; without one, the endpoints the group's
 *       members advertise (asked from the bootstrap servers). Exit 3 when the
 *       worker refuses for now (503: restoring, rebalancing, owner unknown).
 *
 *   salesctl dlq [--topic sales-usd-dlq] [--examples N]
 *       The dead letters grouped by reason (rill.error.reason), with counts,
 *       first/last time and examples (detail, source, key, value).
 *   salesctl dlq replay --reason R [--since T] [--to TOPIC] [--dry-run]
 *                       [--skip-replayed] [--force]
 *       Re-submits the selected dead letters (original value and key) to the
 *       input topic (default: the DLQ name without -dlq), in one Kafka
 *       transaction together with a marker on <dlq>-replays that lists the
 *       DLQ offsets replayed. A dead letter already listed by a marker is not
 *       replayed again: the run refuses (exit 3) unless --skip-replayed
 *       (replay only the others) or --force (again). See docs/operations.md.
 *
 *   salesctl serve [--port 8080] [--bind 127.0.0.1] [--workers ...] [--pg-dsn DSN]
 *       The live web dashboard (apps/salesctl_serve.c, apps/dashboard/).
 *
 * Exit codes: 0 ok, 1 not found or unreachable, 2 bad usage, 3 already replayed
 * (dlq replay) or refused for now (query).
 */
#include "event.h"
#include "owners.h"
#include "window.h"

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s, stop = 1; }

static void usage(FILE *fp) {
        fprintf(fp, "Usage:\n"
                    "  salesctl watch [--bootstrap-servers B] [--topic T] [--once] [--interval-ms N]\n"
                    "                 [--workers HOST:PORT,...] [--pg-dsn DSN|none] [--pg-table T]\n"
                    "                 [--input-topic T]  (env RILL_WORKERS, RILL_PG_DSN)\n"
                    "  salesctl query SELLER [--workers HOST:PORT[,...]] [--bootstrap-servers B] [--application-id A]\n"
                    "                 (env RILL_WORKERS, RILL_BOOTSTRAP_SERVERS, RILL_APPLICATION_ID)\n"
                    "  salesctl dlq [--topic sales-usd-dlq] [--examples N]\n"
                    "  salesctl dlq replay --reason R [--since T] [--to TOPIC] [--dry-run] [--skip-replayed] [--force]\n"
                    "  salesctl serve [--port 8080] [--bind 127.0.0.1] [--workers HOST:PORT,...] [--pg-dsn DSN|none]\n"
                    "                 [--pg-table T] [--interval-ms N]  (env RILL_WORKERS, RILL_PG_DSN; the Postgres\n"
                    "                 password only from PGPASSWORD or PGPASSFILE)\n");
}

/* ---- HTTP to the workers ---------------------------------------------------------- */

typedef struct body {
        char *p;
        size_t len;
} body_t;

static size_t collect(char *data, size_t n, size_t m, void *opaque) {
        body_t *b = opaque;
        b->p = realloc(b->p, b->len + n * m + 1);
        memcpy(b->p + b->len, data, n * m);
        b->len += n * m;
        b->p[b->len] = '\0';
        return n * m;
}

/* GET http://hostport/path into *b (caller frees b->p). @returns the HTTP status, 0 if unreachable. */
static long http_get(CURL *c, const char *hostport, const char *path, body_t *b) {
        char url[1024];
        snprintf(url, sizeof(url), "http://%s%s", hostport, path);
        b->p = NULL, b->len = 0;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
        long status = 0;
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        return status;
}

/* ---- watch ---------------------------------------------------------------------- */

#define KEEP 3 /* closed windows shown per seller */

typedef struct win {
        long long start_ms, end_ms, total, count;
        int pg; /* 0 not checked, 1 agrees, 2 differs, 3 missing */
        long long pg_total, pg_count;
} win_t;

typedef struct row {
        char *seller;
        win_t w[KEEP]; /* newest first */
        int n;
        int open_n;
        long long open_start_ms, open_total, open_count;
} row_t;

static row_t *rows;
static size_t nrows;

static row_t *row_for(const char *seller) {
        for (size_t i = 0; i < nrows; i++)
                if (!strcmp(rows[i].seller, seller))
                        return &rows[i];
        rows = realloc(rows, (nrows + 1) * sizeof(*rows));
        row_t *r = &rows[nrows++];
        memset(r, 0, sizeof(*r));
        r->seller = strdup(seller);
        return r;
}

/* "2026-11-23T21:09:30.000Z" -> epoch ms, 0 if it does not parse. */
static long long iso_ms(const char *s) {
        struct tm tm;
        int ms = 0;
        memset(&tm, 0, sizeof(tm));
        if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                         &tm.tm_min, &tm.tm_sec, &ms) < 6)
                return 0;
        tm.tm_year -= 1900, tm.tm_mon -= 1;
        return (long long)timegm(&tm) * 1000 + ms;
}

/* One committed result into its seller's row. @returns the window, or NULL if ignored. */
static win_t *upsert_row(json_t *d, const char **seller_out) {
        const char *seller = json_string_value(json_object_get(d, "seller_id"));
        json_t *ms = json_object_get(d, "window_start_ms");
        if (!seller || !json_is_integer(ms))
                return NULL;
        row_t *r = row_for(seller);
        long long st = json_integer_value(ms);
        int at = 0;
        while (at < r->n && r->w[at].start_ms > st)
                at++;
        if (at >= KEEP)
                return NULL; /* older than what is shown */
        if (at >= r->n || r->w[at].start_ms != st) { /* insert, dropping the oldest */
                memmove(&r->w[at + 1], &r->w[at], (size_t)(KEEP - 1 - at) * sizeof(win_t));
                if (r->n < KEEP)
                        r->n++;
        }
        win_t *w = &r->w[at];
        memset(w, 0, sizeof(*w));
        w->start_ms = st;
        w->end_ms = iso_ms(json_string_value(json_object_get(d, "window_end")));
        w->total = json_integer_value(json_object_get(d, "total_amount_usd"));
        w->count = json_integer_value(json_object_get(d, "sales_count"));
        *seller_out = r->seller;
        return w;
}

static int row_cmp(const void *a, const void *b) {
        return strcmp(((const row_t *)a)->seller, ((const row_t *)b)->seller);
}

typedef struct watch {
        const char *workers, *pg_dsn, *pg_table;
        CURL *curl;
        PGconn *pg;
        time_t pg_retry;
        char pg_err[256];
        /* status: totals summed over the workers, and their previous values */
        int have_metrics;
        double in_rate, out_rate;
        long long processed, results, lag, dead, prev_processed, prev_results;
        struct timespec prev_at;
        int workers_up, workers_n;
        /* events/s in: growth of the input topic's high watermarks */
        rd_kafka_t *rk;
        const char *input;
        int input_parts;
        long long input_end, prev_input_end;
} watch_t;

/* Sum of the input topic's high watermarks, -1 when unknown. Bounded: 500 ms a partition. */
static long long input_end(watch_t *wt) {
        if (!wt->rk || !wt->input)
                return -1;
        if (!wt->input_parts) {
                const struct rd_kafka_metadata *md;
                rd_kafka_topic_t *t = rd_kafka_topic_new(wt->rk, wt->input, NULL);
                if (rd_kafka_metadata(wt->rk, 0, t, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        if (!md->topics[0].err)
                                wt->input_parts = md->topics[0].partition_cnt;
                        rd_kafka_metadata_destroy(md);
                }
                rd_kafka_topic_destroy(t);
                if (!wt->input_parts)
                        return -1;
        }
        long long sum = 0;
        for (int p = 0; p < wt->input_parts; p++) {
                int64_t lo, hi;
                if (rd_kafka_query_watermark_offsets(wt->rk, wt->input, p, &lo, &hi, 500))
                        return -1;
                sum += hi;
        }
        return sum;
}

/* Sums one metric (every series of the family) in a Prometheus text body. */
static long long metric_sum(const char *text, const char *name) {
        long long sum = 0;
        size_t nl = strlen(name);
        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                if (strncmp(p, name, nl) || (p[nl] != '{' && p[nl] != ' '))
                        continue;
                const char *sp = strchr(p, ' ');
                const char *brace = memchr(p, '}', (size_t)(strchrnul(p, '\n') - p));
                if (brace)
                        sp = strchr(brace, ' ');
                if (sp)
                        sum += atoll(sp + 1);
        }
        return sum;
}

/* Metrics of every worker: throughput since the last call, lag, dead letters. */
static void poll_metrics(watch_t *wt) {
        if (!wt->workers || !*wt->workers)
                return;
        char *list = strdup(wt->workers), *save = NULL;
        long long processed = 0, results = 0, lag = 0, dead = 0;
        int up = 0, n = 0;
        for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                body_t b;
                n++;
                if (http_get(wt->curl, w, "/metrics", &b) == 200 && b.p) {
                        up++;
                        processed += metric_sum(b.p, "rill_records_processed_total");
                        results += metric_sum(b.p, "rill_window_results_total");
                        lag += metric_sum(b.p, "rill_consumer_lag");
                        dead += metric_sum(b.p, "rill_records_dead_lettered_total");
                }
                free(b.p);
        }
        free(list);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double dt = (double)(now.tv_sec - wt->prev_at.tv_sec) + (double)(now.tv_nsec - wt->prev_at.tv_nsec) / 1e9;
        long long in_end = input_end(wt);
        if (wt->have_metrics && dt > 0.05 && in_end >= 0 && wt->prev_input_end >= 0)
                wt->in_rate = in_end >= wt->prev_input_end ? (double)(in_end - wt->prev_input_end) / dt : 0;
        wt->prev_input_end = in_end;
        if (wt->have_metrics && dt > 0.05 && up == n) {
                wt->out_rate = results >= wt->prev_results ? (double)(results - wt->prev_results) / dt : 0;
        }
        wt->have_metrics = 1;
        wt->prev_processed = processed, wt->prev_results = results, wt->prev_at = now;
        wt->processed = processed, wt->results = results, wt->lag = lag, wt->dead = dead;
        wt->workers_up = up, wt->workers_n = n;
}

/* The open window of every shown seller, from the worker that holds it. */
static void poll_open_windows(watch_t *wt) {
        if (!wt->workers || !*wt->workers)
                return;
        for (size_t i = 0; i < nrows; i++) {
                row_t *r = &rows[i];
                r->open_n = 0;
                char *esc = curl_easy_escape(wt->curl, r->seller, 0), path[600];
                snprintf(path, sizeof(path), "/query?key=%s", esc ? esc : "");
                curl_free(esc);
                char *list = strdup(wt->workers), *save = NULL;
                for (char *w = strtok_r(list, ",", &save); w && !r->open_n; w = strtok_r(NULL, ",", &save)) {
                        body_t b;
                        json_t *d = http_get(wt->curl, w, path, &b) == 200 && b.p ? json_loads(b.p, 0, NULL) : NULL;
                        free(b.p);
                        json_t *ws = d ? json_object_get(d, "windows") : NULL, *x;
                        size_t k;
                        json_array_foreach(ws, k, x) {
                                long long st = json_integer_value(json_object_get(x, "window_start_ms"));
                                if (!r->open_n || st > r->open_start_ms) { /* the newest open window */
                                        r->open_start_ms = st;
                                        r->open_total = json_integer_value(json_object_get(x, "sum"));
                                        r->open_count = json_integer_value(json_object_get(x, "count"));
                                        r->open_n = 1;
                                }
                        }
                        json_decref(d);
                }
                free(list);
        }
}

/* Does Postgres hold the same total and count as Kafka for each shown window? */
static void check_postgres(watch_t *wt) {
        if (!wt->pg_dsn || !*wt->pg_dsn || !strcmp(wt->pg_dsn, "none"))
                return;
        if (!wt->pg || PQstatus(wt->pg) != CONNECTION_OK) {
                if (time(NULL) < wt->pg_retry)
                        return;
                if (wt->pg)
                        PQfinish(wt->pg);
                wt->pg = PQconnectdb(wt->pg_dsn);
                if (PQstatus(wt->pg) != CONNECTION_OK) {
                        snprintf(wt->pg_err, sizeof(wt->pg_err), "%s", PQerrorMessage(wt->pg));
                        wt->pg_err[strcspn(wt->pg_err, "\n")] = '\0';
                        wt->pg_retry = time(NULL) + 5;
                        return;
                }
                wt->pg_err[0] = '\0';
        }
        char *table = PQescapeIdentifier(wt->pg, wt->pg_table, strlen(wt->pg_table)), sql[512];
        if (!table)
                return;
        snprintf(sql, sizeof(sql),
                 "SELECT total_amount_usd, sales_count FROM %s WHERE seller_id = $1 AND "
                 "window_start = to_timestamp($2::bigint / 1000.0)",
                 table);
        PQfreemem(table);
        for (size_t i = 0; i < nrows; i++)
                for (int k = 0; k < rows[i].n; k++) {
                        win_t *w = &rows[i].w[k];
                        if (w->pg == 1)
                                continue; /* results are final once committed */
                        char ms[32];
                        snprintf(ms, sizeof(ms), "%lld", w->start_ms);
                        const char *params[2] = {rows[i].seller, ms};
                        PGresult *res = PQexecParams(wt->pg, sql, 2, NULL, params, NULL, NULL, 0);
                        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                                snprintf(wt->pg_err, sizeof(wt->pg_err), "%s", PQresultErrorMessage(res));
                                wt->pg_err[strcspn(wt->pg_err, "\n")] = '\0';
                                PQclear(res);
                                return;
                        }
                        if (PQntuples(res) == 0)
                                w->pg = 3;
                        else {
                                w->pg_total = atoll(PQgetvalue(res, 0, 0));
                                w->pg_count = atoll(PQgetvalue(res, 0, 1));
                                w->pg = w->pg_total == w->total && w->pg_count == w->count ? 1 : 2;
                        }
                        PQclear(res);
                }
}

static const char *pg_word(const watch_t *wt, const win_t *w) {
        if (!wt->pg_dsn || !*wt->pg_dsn || !strcmp(wt->pg_dsn, "none"))
                return "-";
        switch (w->pg) {
        case 1:
                return "agrees";
        case 2:
                return "DIFFERS";
        case 3:
                return "missing";
        default:
                return "?";
        }
}

static void hhmmss(long long ms, char *out, size_t n) {
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(out, n, "%H:%M:%S", &tm);
}

static void status_line(const watch_t *wt, long long seen, char *out, size_t n) {
        if (!wt->workers || !*wt->workers)
                snprintf(out, n, "%lld results read (status: pass --workers HOST:PORT for rates, lag, open windows)",
                         seen);
        else if (!wt->workers_up)
                snprintf(out, n, "%lld results read; no worker reachable at %s", seen, wt->workers);
        else
                snprintf(out, n, "in %.0f events/s | out %.1f results/s | lag %lld | dead letters %lld | workers %d/%d%s%s",
                         wt->in_rate, wt->out_rate, wt->lag, wt->dead, wt->workers_up, wt->workers_n,
                         wt->pg_err[0] ? " | postgres: " : "", wt->pg_err);
}

/* The whole table, in place on a terminal (tty) or as a plain block. */
static void draw(const watch_t *wt, int tty, long long seen) {
        if (nrows > 1)
                qsort(rows, nrows, sizeof(*rows), row_cmp);
        if (tty)
                fputs("\033[H\033[J", stdout);
        time_t now = time(NULL);
        char ts[32], st[512];
        strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&now));
        printf("sales per seller, committed windows (UTC)  %s\n", ts);
        printf("%-20s %-19s %14s %7s %-8s %-10s %14s %7s\n", "SELLER", "CLOSED WINDOW", "TOTAL USD", "SALES",
               "POSTGRES", "OPEN FROM", "RUNNING USD", "SALES");
        for (size_t i = 0; i < nrows; i++) {
                const row_t *r = &rows[i];
                for (int k = 0; k < (r->n ? r->n : 1); k++) {
                        char a[16] = "", b[16] = "", o[16] = "", win[40] = "", tot[24] = "", cnt[16] = "",
                             ot[24] = "", oc[16] = "";
                        if (r->n) {
                                hhmmss(r->w[k].start_ms, a, sizeof(a));
                                hhmmss(r->w[k].end_ms, b, sizeof(b));
                                snprintf(win, sizeof(win), "%s-%s", a, b);
                                snprintf(tot, sizeof(tot), "%lld", r->w[k].total);
                                snprintf(cnt, sizeof(cnt), "%lld", r->w[k].count);
                        }
                        if (k == 0 && r->open_n) {
                                hhmmss(r->open_start_ms, o, sizeof(o));
                                snprintf(ot, sizeof(ot), "%lld", r->open_total);
                                snprintf(oc, sizeof(oc), "%lld", r->open_count);
                        }
                        printf("%-20.20s %-19s %14s %7s %-8s %-10s %14s %7s\n", k ? "" : r->seller, win, tot, cnt,
                               r->n ? pg_word(wt, &r->w[k]) : "", o, ot, oc);
                }
        }
        status_line(wt, seen, st, sizeof(st));
        printf("%s\n", st);
        fflush(stdout);
}


/* Assign every partition of topic (md: its metadata, destroyed here) from
 * the beginning. @returns the partition count. */
static int assign_from_beginning(rd_kafka_t *rk, const struct rd_kafka_metadata *md,
                                 const char *topic) {
        int nparts = md->topics[0].partition_cnt;
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(nparts);
        for (int p = 0; p < nparts; p++)
                rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
        rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        return nparts;
}

static int cmd_watch(int argc, char **argv) {
        const char *bootstrap = getenv("RILL_BOOTSTRAP_SERVERS"), *topic = "aggregated-sales";
        watch_t wt = {.workers = getenv("RILL_WORKERS"), .pg_dsn = getenv("RILL_PG_DSN"),
                      .pg_table = "aggregated_sales", .input = "sales-usd"};
        int once = 0;
        long interval = 1000;
        for (int i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--once"))
                        once = 1;
                else if (!strcmp(argv[i], "--bootstrap-servers") && i + 1 < argc)
                        bootstrap = argv[++i];
                else if (!strcmp(argv[i], "--topic") && i + 1 < argc)
                        topic = argv[++i];
                else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
                        interval = atol(argv[++i]);
                else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
                        wt.workers = argv[++i];
                else if (!strcmp(argv[i], "--pg-dsn") && i + 1 < argc)
                        wt.pg_dsn = argv[++i];
                else if (!strcmp(argv[i], "--pg-table") && i + 1 < argc)
                        wt.pg_table = argv[++i];
                else if (!strcmp(argv[i], "--input-topic") && i + 1 < argc)
                        wt.input = argv[++i];
                else {
                        fprintf(stderr, "salesctl: unknown watch option %s\n", argv[i]);
                        return 2;
                }
        }
        if (interval < 100 || interval > 600000) {
                fprintf(stderr, "salesctl: --interval-ms %ld out of range (100 .. 600000)\n", interval);
                return 2;
        }
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bootstrap ? bootstrap : "127.0.0.1:9092", err, sizeof(err));
        rd_kafka_conf_set(c, "group.id", "salesctl-watch", err, sizeof(err));
        rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err));
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
        rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "salesctl: %s\n", err);
                return 1;
        }
        rd_kafka_poll_set_consumer(rk);
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (e || md->topics[0].err) {
                fprintf(stderr, "salesctl: cannot read topic %s on %s: %s\n", topic,
                        bootstrap ? bootstrap : "127.0.0.1:9092", rd_kafka_err2str(e ? e : md->topics[0].err));
                if (!e)
                        rd_kafka_metadata_destroy(md);
                rd_kafka_destroy(rk);
                return 1;
        }
        int nparts = assign_from_beginning(rk, md, topic), eofs = 0;
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        int tty = isatty(1) && !once;
        long long seen = 0, drawn = -1;
        time_t last_status = 0; /* piped: a status line when results came, else every 10 s */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        wt.curl = curl_easy_init();
        wt.rk = rk;
        struct timespec last, now;
        clock_gettime(CLOCK_MONOTONIC, &last);
        time_t deadline = time(NULL) + 120; /* --once: bounded even if a partition never reports EOF */
        while (!stop) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (m) {
                        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                eofs++;
                        else if (!m->err) {
                                json_t *d = json_loadb(m->payload, m->len, 0, NULL);
                                const char *seller = NULL;
                                win_t *w = d ? upsert_row(d, &seller) : NULL;
                                if (d)
                                        seen++;
                                if (w && !tty && !once) { /* piped: one plain line per new result */
                                        check_postgres(&wt);
                                        char a[16], b[16];
                                        hhmmss(w->start_ms, a, sizeof(a));
                                        hhmmss(w->end_ms, b, sizeof(b));
                                        printf("result seller=%s window=%s-%s total_usd=%lld sales=%lld postgres=%s\n",
                                               seller, a, b, w->total, w->count, pg_word(&wt, w));
                                        fflush(stdout);
                                }
                                json_decref(d);
                        }
                        rd_kafka_message_destroy(m);
                }
                if (once && (eofs >= nparts || time(NULL) > deadline))
                        break;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (!once && (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= interval) {
                        poll_metrics(&wt);
                        if (tty) {
                                poll_open_windows(&wt);
                                check_postgres(&wt);
                                draw(&wt, 1, seen);
                        } else if (seen != drawn || now.tv_sec - last_status >= 10) {
                                last_status = now.tv_sec;
                                char st[512];
                                status_line(&wt, seen, st, sizeof(st));
                                printf("status %s\n", st);
                                fflush(stdout);
                        }
                        drawn = seen;
                        last = now;
                }
        }
        if (once) { /* on a terminal the last table stays on the screen */
                poll_metrics(&wt);
                poll_open_windows(&wt);
                check_postgres(&wt);
                draw(&wt, 0, seen);
        }
        if (wt.pg)
                PQfinish(wt.pg);
        curl_easy_cleanup(wt.curl);
        curl_global_cleanup();
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return 0;
}

/* ---- query ---------------------------------------------------------------------------- */

/* The HTTP endpoints the members of group advertise (engine/owners.c), as
 * "host:port,..." into list (distinct, in the group's order). */
typedef struct endpoints {
        char list[4096];
        int n;
} endpoints_t;

static void add_endpoint(void *opaque, const char *client_id, const char *host,
                         const rd_kafka_topic_partition_list_t *assignment) {
        endpoints_t *e = opaque;
        char h[RILL_PEER_HOST_MAX], one[RILL_PEER_HOST_MAX + 16];
        int port;
        (void)assignment;
        if (rill_peer_endpoint(client_id, host, h, sizeof(h), &port))
                return;
        snprintf(one, sizeof(one), strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, port);
        size_t n = strlen(one), l = strlen(e->list);
        for (const char *s = strstr(e->list, one); s; s = strstr(s + 1, one))
                if ((s == e->list || s[-1] == ',') && (s[n] == ',' || !s[n]))
                        return; /* already listed */
        if (l + n + 2 < sizeof(e->list)) {
                snprintf(e->list + l, sizeof(e->list) - l, "%s%s", l ? "," : "", one);
                e->n++;
        }
}

/* Any one worker answers for any key (it forwards to the owner), so
 * salesctl asks the first worker that answers: from --workers, or, without
 * them, the endpoints the group's members advertise (the bootstrap servers
 * and the application id are enough). A 503 is the worker refusing for now
 * (the owner restoring, a rebalance, an owner without HTTP): exit 3. */
static int cmd_query(int argc, char **argv) {
        const char *seller = NULL, *workers = getenv("RILL_WORKERS");
        const char *bootstrap = getenv("RILL_BOOTSTRAP_SERVERS"), *app = getenv("RILL_APPLICATION_ID");
        for (int i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--workers") && i + 1 < argc)
                        workers = argv[++i];
                else if (!strcmp(argv[i], "--bootstrap-servers") && i + 1 < argc)
                        bootstrap = argv[++i], workers = NULL;
                else if (!strcmp(argv[i], "--application-id") && i + 1 < argc)
                        app = argv[++i];
                else if (!seller && argv[i][0] != '-')
                        seller = argv[i];
                else {
                        fprintf(stderr, "salesctl: unexpected query argument %s\n", argv[i]);
                        return 2;
                }
        }
        if (!seller) {
                fprintf(stderr, "salesctl: query needs a SELLER (and --workers HOST:PORT[,...], or the "
                                "bootstrap servers: --bootstrap-servers B --application-id A)\n");
                return 2;
        }
        endpoints_t found = {"", 0};
        if (!workers || !*workers) { /* from the group's description */
                char err[512];
                bootstrap = bootstrap ? bootstrap : "127.0.0.1:9092";
                app = app && *app ? app : "sales-aggregator";
                rd_kafka_conf_t *kc = rd_kafka_conf_new();
                rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
                rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
                int members = rk ? rill_owners_describe(rk, app, 10000, add_endpoint, &found, err,
                                                        sizeof(err))
                                 : -1;
                if (rk)
                        rd_kafka_destroy(rk);
                else
                        rd_kafka_conf_destroy(kc);
                if (members < 0 || !found.n) {
                        fprintf(stderr, members < 0 ? "salesctl: cannot find the workers of %s on %s: %s\n"
                                                    : "salesctl: no worker of %s on %s advertises an HTTP "
                                                      "endpoint%.0s (hint: is the aggregator running with "
                                                      "--http-port? or give --workers HOST:PORT)\n",
                                app, bootstrap, err);
                        return 1;
                }
                workers = found.list;
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        CURL *c = curl_easy_init();
        char *esc = curl_easy_escape(c, seller, 0);
        char *list = strdup(workers), *save = NULL;
        int rc = 1, reachable = 0;
        for (char *w = strtok_r(list, ",", &save); w && !reachable; w = strtok_r(NULL, ",", &save)) {
                size_t ulen = strlen(w) + strlen(esc) + 32;
                char *url = malloc(ulen);
                body_t b = {NULL, 0};
                snprintf(url, ulen, "http://%s/query?key=%s", w, esc);
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
                curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L); /* a forward: at most ~10 s */
                curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
                long status = 0;
                if (curl_easy_perform(c) == CURLE_OK) {
                        reachable++;
                        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                }
                json_t *d = b.p ? json_loads(b.p, 0, NULL) : NULL;
                const char *error = json_string_value(json_object_get(d, "error"));
                if (status == 200 && d) {
                        json_t *ws = json_object_get(d, "windows"), *x;
                        size_t i;
                        printf("seller %s (worker %s, instance %s)\n", seller, w,
                               json_string_value(json_object_get(d, "instance")) ?: "?");
                        json_array_foreach(ws, i, x) {
                                char s[40], e[40];
                                rill_iso8601(json_integer_value(json_object_get(x, "window_start_ms")), s, sizeof(s));
                                rill_iso8601(json_integer_value(json_object_get(x, "window_end_ms")), e, sizeof(e));
                                printf("  open window %s .. %s  total_amount_usd=%lld sales_count=%lld\n", s, e,
                                       (long long)json_integer_value(json_object_get(x, "sum")),
                                       (long long)json_integer_value(json_object_get(x, "count")));
                        }
                        rc = 0;
                } else if (status == 404) {
                        fprintf(stderr, "salesctl: no worker holds an open window for seller %s\n", seller);
                } else if (status == 503) {
                        fprintf(stderr, "salesctl: worker %s cannot answer for seller %s now: %s\n", w, seller,
                                error ? error : "unavailable (retry)");
                        rc = 3;
                } else if (status) {
                        fprintf(stderr, "salesctl: worker %s answered %ld for seller %s: %s\n", w, status, seller,
                                error ? error : "(no error text)");
                }
                json_decref(d);
                free(b.p);
                free(url);
        }
        if (!reachable)
                fprintf(stderr, "salesctl: no worker reachable at %s (hint: --workers HOST:PORT of the "
                                "aggregators' --http-port)\n",
                        workers);
        free(list);
        curl_free(esc);
        curl_easy_cleanup(c);
        curl_global_cleanup();
        return rc;
}

/* ---- dlq ------------------------------------------------------------------------------ */

/* One dead letter as read from the DLQ topic. */
typedef struct dl {
        int32_t partition;
        int64_t offset, ts_ms;
        char *reason, *detail, *source; /* source: topic[partition]@offset */
        void *key, *value;
        size_t key_len, value_len;
} dl_t;

typedef struct dls {
        dl_t *v;
        size_t n;
} dls_t;

static char *header_str(rd_kafka_headers_t *h, const char *name) {
        const void *v;
        size_t len;
        if (!h || rd_kafka_header_get_last(h, name, &v, &len))
                return strdup("");
        char *s = malloc(len + 1);
        memcpy(s, v, len);
        s[len] = '\0';
        return s;
}

static void *dup_bytes(const void *p, size_t n) {
        if (!p)
                return NULL;
        void *d = malloc(n ? n : 1);
        memcpy(d, p, n);
        return d;
}

static rd_kafka_t *new_consumer(const char *bootstrap, char *err, size_t errsz) {
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, errsz);
        rd_kafka_conf_set(c, "group.id", "salesctl-dlq", err, errsz);
        rd_kafka_conf_set(c, "isolation.level", "read_committed", err, errsz);
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, errsz);
        rd_kafka_conf_set(c, "enable.partition.eof", "true", err, errsz);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, errsz);
        if (rk)
                rd_kafka_poll_set_consumer(rk);
        return rk;
}

/* Reads topic from the beginning to its end (read_committed). Calls each(m) per record.
 * @returns 0, 1 when the topic does not exist (missing_ok) or cannot be read. Bounded: 120 s. */
static int read_all(rd_kafka_t *rk, const char *topic, int missing_ok, void (*each)(rd_kafka_message_t *, void *),
                    void *opaque) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
        rd_kafka_topic_destroy(t);
        if (e || md->topics[0].err) {
                rd_kafka_resp_err_t te = e ? e : md->topics[0].err;
                if (!e)
                        rd_kafka_metadata_destroy(md);
                if (missing_ok && te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                        return 0;
                fprintf(stderr, "salesctl: cannot read topic %s: %s\n", topic, rd_kafka_err2str(te));
                return 1;
        }
        int nparts = assign_from_beginning(rk, md, topic), eofs = 0;
        time_t deadline = time(NULL) + 120;
        while (eofs < nparts && !stop) {
                if (time(NULL) > deadline) {
                        fprintf(stderr, "salesctl: reading %s did not reach its end in 120 s\n", topic);
                        rd_kafka_assign(rk, NULL);
                        return 1;
                }
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        eofs++;
                else if (!m->err)
                        each(m, opaque);
                rd_kafka_message_destroy(m);
        }
        rd_kafka_assign(rk, NULL);
        return stop ? 1 : 0;
}

static void collect_dl(rd_kafka_message_t *m, void *opaque) {
        dls_t *d = opaque;
        rd_kafka_headers_t *h = NULL;
        rd_kafka_message_headers(m, &h);
        d->v = realloc(d->v, (d->n + 1) * sizeof(*d->v));
        dl_t *x = &d->v[d->n++];
        memset(x, 0, sizeof(*x));
        x->partition = m->partition, x->offset = m->offset;
        x->ts_ms = rd_kafka_message_timestamp(m, NULL);
        x->reason = header_str(h, "rill.error.reason");
        x->detail = header_str(h, "rill.error.detail");
        char *st = header_str(h, "rill.source.topic"), *sp = header_str(h, "rill.source.partition"),
             *so = header_str(h, "rill.source.offset");
        size_t n = strlen(st) + strlen(sp) + strlen(so) + 4;
        x->source = malloc(n);
        snprintf(x->source, n, "%s[%s]@%s", st, sp, so);
        free(st), free(sp), free(so);
        x->key = dup_bytes(m->key, m->key_len), x->key_len = m->key_len;
        x->value = dup_bytes(m->payload, m->len), x->value_len = m->len;
}

static void free_dls(dls_t *d) {
        for (size_t i = 0; i < d->n; i++) {
                free(d->v[i].reason), free(d->v[i].detail), free(d->v[i].source);
                free(d->v[i].key), free(d->v[i].value);
        }
        free(d->v);
}

/* Printable excerpt of bytes: non-printable as \xHH, at most max characters of input. */
static void excerpt(const void *p, size_t n, size_t max, char *out, size_t outsz) {
        const unsigned char *u = p;
        size_t j = 0;
        for (size_t i = 0; u && i < n && i < max && j + 5 < outsz; i++)
                j += (size_t)(u[i] >= 0x20 && u[i] < 0x7f && u[i] != '\\'
                                  ? snprintf(out + j, outsz - j, "%c", u[i])
                                  : snprintf(out + j, outsz - j, "\\x%02x", u[i]));
        if (n > max && j + 4 < outsz)
                j += (size_t)snprintf(out + j, outsz - j, "...");
        out[j] = '\0';
}

/* "2026-11-23T21:00:00Z", epoch ms, or a duration ago ("30m", "2h", "1d", "45s"). -1 if invalid. */
static long long parse_since(const char *s) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end != s && *end && !end[1] && v >= 0) {
                long long unit = *end == 's' ? 1000 : *end == 'm' ? 60000 : *end == 'h' ? 3600000
                               : *end == 'd' ? 86400000 : 0;
                if (unit)
                        return (long long)time(NULL) * 1000 - v * unit;
        }
        if (end != s && !*end && v >= 0)
                return v;
        long long iso = iso_ms(s);
        if (!iso) {
                struct tm tm;
                memset(&tm, 0, sizeof(tm));
                if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                           &tm.tm_min, &tm.tm_sec) == 6) {
                        tm.tm_year -= 1900, tm.tm_mon -= 1;
                        iso = (long long)timegm(&tm) * 1000;
                }
        }
        return iso ? iso : -1;
}

typedef struct reason_group {
        const char *reason;
        size_t count;
        int64_t first_ms, last_ms;
        size_t ex[3];
        int nex;
} reason_group_t;

static int cmd_dlq_list(const char *bootstrap, const char *topic, int examples) {
        char err[512];
        rd_kafka_t *rk = new_consumer(bootstrap, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "salesctl: %s\n", err);
                return 1;
        }
        dls_t d = {0};
        int rc = read_all(rk, topic, 0, collect_dl, &d);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        if (rc) {
                free_dls(&d);
                return rc;
        }
        reason_group_t *g = NULL;
        size_t ng = 0;
        for (size_t i = 0; i < d.n; i++) {
                reason_group_t *x = NULL;
                for (size_t k = 0; k < ng; k++)
                        if (!strcmp(g[k].reason, d.v[i].reason))
                                x = &g[k];
                if (!x) {
                        g = realloc(g, (ng + 1) * sizeof(*g));
                        x = &g[ng++];
                        memset(x, 0, sizeof(*x));
                        x->reason = d.v[i].reason;
                        x->first_ms = d.v[i].ts_ms;
                }
                x->count++;
                if (d.v[i].ts_ms < x->first_ms)
                        x->first_ms = d.v[i].ts_ms;
                if (d.v[i].ts_ms > x->last_ms)
                        x->last_ms = d.v[i].ts_ms;
                if (x->nex < examples && x->nex < 3)
                        x->ex[x->nex++] = i;
        }
        printf("%s: %zu dead letters, %zu reasons\n", topic, d.n, ng);
        for (size_t k = 0; k < ng; k++) {
                char a[40], b[40];
                rill_iso8601(g[k].first_ms, a, sizeof(a));
                rill_iso8601(g[k].last_ms, b, sizeof(b));
                printf("\n%-20s %8zu   first %s  last %s\n", g[k].reason[0] ? g[k].reason : "(no reason)", g[k].count,
                       a, b);
                for (int e = 0; e < g[k].nex; e++) {
                        dl_t *x = &d.v[g[k].ex[e]];
                        char key[120], val[400];
                        excerpt(x->key, x->key_len, 40, key, sizeof(key));
                        excerpt(x->value, x->value_len, 120, val, sizeof(val));
                        printf("  %s: %s\n    dlq %s[%d]@%lld  from %s  key=%s\n    value %s\n", x->reason, x->detail,
                               topic, x->partition, (long long)x->offset, x->source, x->key ? key : "(null)", val);
                }
        }
        free(g);
        free_dls(&d);
        return 0;
}

/* ---- dlq replay ------------------------------------------------------------------------ */

/* Replays already recorded on <dlq>-replays: each marker lists the DLQ coordinates it replayed. */
typedef struct replayed {
        int32_t *part;
        int64_t *off;
        char **id;
        size_t n;
} replayed_t;

static void collect_marker(rd_kafka_message_t *m, void *opaque) {
        replayed_t *r = opaque;
        json_t *d = json_loadb(m->payload, m->len, 0, NULL), *x;
        const char *id = json_string_value(json_object_get(d, "replay_id"));
        size_t i;
        json_array_foreach(json_object_get(d, "records"), i, x) { /* [partition, first, last] */
                long long p = json_integer_value(json_array_get(x, 0)), lo = json_integer_value(json_array_get(x, 1)),
                          hi = json_integer_value(json_array_get(x, 2));
                for (long long o = lo; o <= hi && o - lo < 10000000; o++) {
                        r->part = realloc(r->part, (r->n + 1) * sizeof(*r->part));
                        r->off = realloc(r->off, (r->n + 1) * sizeof(*r->off));
                        r->id = realloc(r->id, (r->n + 1) * sizeof(*r->id));
                        r->part[r->n] = (int32_t)p, r->off[r->n] = o, r->id[r->n] = strdup(id ? id : "?");
                        r->n++;
                }
        }
        json_decref(d);
}

static const char *replayed_by(const replayed_t *r, int32_t p, int64_t o) {
        for (size_t i = 0; i < r->n; i++)
                if (r->part[i] == p && r->off[i] == o)
                        return r->id[i];
        return NULL;
}

static int ensure_topic(rd_kafka_t *rk, const char *topic, char *err, size_t errsz) {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, -1, err, errsz);
        if (!nt)
                return -1;
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
        int rc = -1;
        if (!ev)
                snprintf(err, errsz, "no answer to CreateTopics %.300s in 15 s", topic);
        else {
                size_t n;
                const rd_kafka_topic_result_t **res =
                    rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
                rd_kafka_resp_err_t e = n ? rd_kafka_topic_result_error(res[0]) : rd_kafka_event_error(ev);
                if (!e || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                        rc = 0;
                else
                        snprintf(err, errsz, "cannot create %.300s: %s", topic, rd_kafka_err2str(e));
                rd_kafka_event_destroy(ev);
        }
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
        return rc;
}

static int cmd_dlq_replay(const char *bootstrap, const char *topic, int argc, char **argv) {
        const char *reason = NULL, *since_s = NULL, *target = NULL;
        int force = 0, dry = 0, skip = 0;
        for (int i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--reason") && i + 1 < argc)
                        reason = argv[++i];
                else if (!strcmp(argv[i], "--since") && i + 1 < argc)
                        since_s = argv[++i];
                else if (!strcmp(argv[i], "--to") && i + 1 < argc)
                        target = argv[++i];
                else if (!strcmp(argv[i], "--force"))
                        force = 1;
                else if (!strcmp(argv[i], "--skip-replayed"))
                        skip = 1;
                else if (!strcmp(argv[i], "--dry-run"))
                        dry = 1;
                else {
                        fprintf(stderr, "salesctl: unknown dlq replay option %s\n", argv[i]);
                        return 2;
                }
        }
        if (!reason || !*reason) {
                fprintf(stderr, "salesctl: dlq replay needs --reason R (see salesctl dlq for the reasons)\n");
                return 2;
        }
        long long since = since_s ? parse_since(since_s) : 0;
        if (since < 0) {
                fprintf(stderr, "salesctl: --since %s is not a time (2026-11-23T21:00:00Z, epoch ms, or 30m/2h/1d ago)\n",
                        since_s);
                return 2;
        }
        char tgt[512], markers[512], err[1024];
        size_t tl = strlen(topic);
        if (!target) { /* <input>-dlq -> <input> */
                if (tl <= 4 || strcmp(topic + tl - 4, "-dlq")) {
                        fprintf(stderr, "salesctl: cannot derive the input topic from %s (hint: --to INPUT_TOPIC)\n",
                                topic);
                        return 2;
                }
                snprintf(tgt, sizeof(tgt), "%.*s", (int)(tl - 4), topic);
                target = tgt;
        }
        snprintf(markers, sizeof(markers), "%s-replays", topic);
        rd_kafka_t *rk = new_consumer(bootstrap, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "salesctl: %s\n", err);
                return 1;
        }
        dls_t d = {0};
        replayed_t done = {0};
        int rc = read_all(rk, topic, 0, collect_dl, &d);
        if (!rc)
                rc = read_all(rk, markers, 1, collect_marker, &done);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        /* the selection, and what of it was replayed before */
        size_t *sel = calloc(d.n + 1, sizeof(*sel)), nsel = 0, nprev = 0;
        const char *prev_id = NULL;
        for (size_t i = 0; !rc && i < d.n; i++) {
                if (strcmp(d.v[i].reason, reason) || d.v[i].ts_ms < since)
                        continue;
                const char *by = replayed_by(&done, d.v[i].partition, d.v[i].offset);
                if (by) {
                        nprev++;
                        prev_id = by;
                        if (skip)
                                continue;
                }
                sel[nsel++] = i;
        }
        if (!rc && nprev && !force && !skip) {
                fprintf(stderr,
                        "salesctl: %zu of the %zu selected dead letters (reason %s) were already replayed (replay %s, "
                        "recorded on %s); nothing replayed (hint: --skip-replayed replays only the others, --force "
                        "replays them again)\n",
                        nprev, nsel, reason, prev_id, markers);
                rc = 3;
        } else if (!rc && !nsel) {
                printf("no dead letters to replay (reason %s%s%s, %zu already replayed)\n", reason,
                       since_s ? " since " : "", since_s ? since_s : "", nprev);
        } else if (!rc && dry) {
                for (size_t k = 0; k < nsel; k++)
                        printf("would replay %s[%d]@%lld -> %s\n", topic, d.v[sel[k]].partition,
                               (long long)d.v[sel[k]].offset, target);
                printf("dry run: %zu dead letters (reason %s) would go to %s\n", nsel, reason, target);
        } else if (!rc) {
                /* the replay id names this replay: time, reason and selection */
                char id[96];
                unsigned long long hsh = 1469598103934665603ULL;
                for (size_t k = 0; k < nsel; k++) {
                        hsh = (hsh ^ (unsigned long long)d.v[sel[k]].partition) * 1099511628211ULL;
                        hsh = (hsh ^ (unsigned long long)d.v[sel[k]].offset) * 1099511628211ULL;
                }
                snprintf(id, sizeof(id), "%lld-%016llx", (long long)time(NULL), hsh);
                /* the marker: [partition, first, last] ranges of DLQ offsets */
                json_t *ranges = json_array();
                for (size_t k = 0; k < nsel; k++) {
                        dl_t *x = &d.v[sel[k]];
                        json_t *last = json_array_size(ranges) ? json_array_get(ranges, json_array_size(ranges) - 1) : NULL;
                        if (last && json_integer_value(json_array_get(last, 0)) == x->partition &&
                            json_integer_value(json_array_get(last, 2)) + 1 == x->offset)
                                json_array_set_new(last, 2, json_integer(x->offset));
                        else
                                json_array_append_new(ranges, json_pack("[iII]", (int)x->partition,
                                                                        (json_int_t)x->offset, (json_int_t)x->offset));
                }
                json_t *mj = json_pack("{ss ss ss ss s:I s:I s:o}", "replay_id", id, "reason", reason,
                                                    "dlq", topic, "target", target, "since_ms", (json_int_t)since,
                                                    "count", (json_int_t)nsel, "records", ranges);
                char *marker = json_dumps(mj, JSON_COMPACT);
                json_decref(mj);
                rd_kafka_conf_t *pc = rd_kafka_conf_new();
                char txid[600];
                snprintf(txid, sizeof(txid), "salesctl-dlq-replay-%s", topic);
                rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, err, sizeof(err));
                rd_kafka_conf_set(pc, "transactional.id", txid, err, sizeof(err));
                rd_kafka_conf_set(pc, "transaction.timeout.ms", "60000", err, sizeof(err));
                rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
                rd_kafka_error_t *te = NULL;
                if (!p) {
                        fprintf(stderr, "salesctl: %s\n", err);
                        rc = 1;
                } else if (ensure_topic(p, markers, err, sizeof(err))) {
                        fprintf(stderr, "salesctl: %s (the replay is recorded there)\n", err);
                        rc = 1;
                } else if ((te = rd_kafka_init_transactions(p, 30000)) || (te = rd_kafka_begin_transaction(p))) {
                        fprintf(stderr, "salesctl: cannot start the replay transaction: %s\n", rd_kafka_error_string(te));
                        rc = 1;
                } else {
                        for (size_t k = 0; k < nsel && !rc; k++) {
                                dl_t *x = &d.v[sel[k]];
                                char off[64];
                                snprintf(off, sizeof(off), "%s[%d]@%lld", topic, x->partition, (long long)x->offset);
                                rd_kafka_resp_err_t e;
                                for (int tries = 0;; tries++) {
                                        e = rd_kafka_producev(
                                            p, RD_KAFKA_V_TOPIC(target), RD_KAFKA_V_KEY(x->key, x->key_len),
                                            RD_KAFKA_V_VALUE(x->value, x->value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                            RD_KAFKA_V_HEADER("rill.replay.id", id, -1),
                                            RD_KAFKA_V_HEADER("rill.replay.of", off, -1), RD_KAFKA_V_END);
                                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries > 300)
                                                break;
                                        rd_kafka_poll(p, 100);
                                }
                                if (e) {
                                        fprintf(stderr, "salesctl: cannot produce to %s: %s\n", target, rd_kafka_err2str(e));
                                        rc = 1;
                                }
                        }
                        rd_kafka_resp_err_t e = rc ? RD_KAFKA_RESP_ERR_NO_ERROR
                                                   : rd_kafka_producev(p, RD_KAFKA_V_TOPIC(markers),
                                                                       RD_KAFKA_V_KEY(reason, strlen(reason)),
                                                                       RD_KAFKA_V_VALUE(marker, strlen(marker)),
                                                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                                       RD_KAFKA_V_END);
                        if (e) {
                                fprintf(stderr, "salesctl: cannot record the replay on %s: %s\n", markers,
                                        rd_kafka_err2str(e));
                                rc = 1;
                        }
                        if (!rc && (te = rd_kafka_commit_transaction(p, 60000))) {
                                fprintf(stderr, "salesctl: the replay transaction failed, nothing was replayed: %s\n",
                                        rd_kafka_error_string(te));
                                rc = 1;
                        } else if (rc) {
                                rd_kafka_error_t *ae = rd_kafka_abort_transaction(p, 30000);
                                if (ae)
                                        rd_kafka_error_destroy(ae);
                        }
                }
                if (te)
                        rd_kafka_error_destroy(te);
                if (!rc)
                        printf("replayed %zu dead letters (reason %s) to %s: replay %s, recorded on %s\n", nsel, reason,
                               target, id, markers);
                if (p)
                        rd_kafka_destroy(p);
                free(marker);
        }
        for (size_t i = 0; i < done.n; i++)
                free(done.id[i]);
        free(done.part), free(done.off), free(done.id);
        free(sel);
        free_dls(&d);
        return rc;
}

static int cmd_dlq(int argc, char **argv) {
        const char *bootstrap = getenv("RILL_BOOTSTRAP_SERVERS"), *topic = "sales-usd-dlq";
        int examples = 2, i = 0, replay = argc > 0 && !strcmp(argv[0], "replay");
        char **rest = malloc((size_t)(argc + 1) * sizeof(*rest));
        int nrest = 0;
        for (i = replay; i < argc; i++) {
                if (!strcmp(argv[i], "--bootstrap-servers") && i + 1 < argc)
                        bootstrap = argv[++i];
                else if (!strcmp(argv[i], "--topic") && i + 1 < argc)
                        topic = argv[++i];
                else if (!replay && !strcmp(argv[i], "--examples") && i + 1 < argc)
                        examples = atoi(argv[++i]);
                else if (replay)
                        rest[nrest++] = argv[i];
                else {
                        fprintf(stderr, "salesctl: unknown dlq option %s\n", argv[i]);
                        free(rest);
                        return 2;
                }
        }
        if (!bootstrap)
                bootstrap = "127.0.0.1:9092";
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        int rc = replay ? cmd_dlq_replay(bootstrap, topic, nrest, rest) : cmd_dlq_list(bootstrap, topic, examples);
        free(rest);
        return rc;
}

int cmd_serve(int argc, char **argv); /* apps/salesctl_serve.c */

int main(int argc, char **argv) {
        if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (!strcmp(argv[1], "watch"))
                return cmd_watch(argc - 2, argv + 2);
        if (!strcmp(argv[1], "query"))
                return cmd_query(argc - 2, argv + 2);
        if (!strcmp(argv[1], "dlq"))
                return cmd_dlq(argc - 2, argv + 2);
        if (!strcmp(argv[1], "serve"))
                return cmd_serve(argc - 2, argv + 2);
        fprintf(stderr, "salesctl: unknown command %s (watch, query, dlq or serve)\n", argv[1]);
        return 2;
}
