/*
 * salesctl -- watch and query the sales aggregation.
 *
 *   salesctl watch [--bootstrap-servers B] [--topic aggregated-sales] [--once]
 *       A live table of the latest committed window result per seller, read
 *       with a read_committed consumer, refreshed in place on a terminal.
 *       --once reads to the end, prints the table and exits.
 *   salesctl query SELLER --workers HOST:PORT[,HOST:PORT...]
 *       The running totals of SELLER's open windows, from the worker that
 *       owns the seller's partition: every worker's HTTP endpoint serves its
 *       own store (/query?key=), salesctl asks each until one has it.
 *
 * Exit codes: 0 ok, 1 not found or unreachable, 2 bad usage.
 */
#include "event.h"
#include "window.h"

#include <curl/curl.h>
#include <jansson.h>
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
                    "  salesctl query SELLER --workers HOST:PORT[,HOST:PORT...]  (env RILL_WORKERS)\n");
}

/* ---- watch ---------------------------------------------------------------------- */

typedef struct row {
        char *seller, *start, *end;
        long long start_ms, total, count;
} row_t;

static row_t *rows;
static size_t nrows;

static void upsert_row(json_t *d) {
        const char *seller = json_string_value(json_object_get(d, "seller_id"));
        json_t *ms = json_object_get(d, "window_start_ms");
        if (!seller || !json_is_integer(ms))
                return;
        row_t *r = NULL;
        for (size_t i = 0; i < nrows; i++)
                if (!strcmp(rows[i].seller, seller))
                        r = &rows[i];
        if (!r) {
                rows = realloc(rows, (nrows + 1) * sizeof(*rows));
                r = &rows[nrows++];
                memset(r, 0, sizeof(*r));
                r->seller = strdup(seller);
                r->start_ms = -1;
        }
        if (json_integer_value(ms) < r->start_ms)
                return; /* keep the latest window */
        free(r->start), free(r->end);
        r->start_ms = json_integer_value(ms);
        r->start = strdup(json_string_value(json_object_get(d, "window_start")) ?: "?");
        r->end = strdup(json_string_value(json_object_get(d, "window_end")) ?: "?");
        r->total = json_integer_value(json_object_get(d, "total_amount_usd"));
        r->count = json_integer_value(json_object_get(d, "sales_count"));
}

static int row_cmp(const void *a, const void *b) {
        return strcmp(((const row_t *)a)->seller, ((const row_t *)b)->seller);
}

static void draw(int tty, long long seen) {
        if (nrows > 1)
                qsort(rows, nrows, sizeof(*rows), row_cmp);
        if (tty)
                fputs("\033[H\033[J", stdout);
        time_t now = time(NULL);
        char ts[32];
        strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&now));
        printf("latest committed window per seller  (%s, %lld results read)\n", ts, seen);
        printf("%-24s %-22s %-22s %16s %8s\n", "SELLER", "WINDOW START", "WINDOW END", "TOTAL USD", "SALES");
        for (size_t i = 0; i < nrows; i++)
                printf("%-24.24s %-22s %-22s %16lld %8lld\n", rows[i].seller, rows[i].start, rows[i].end,
                       rows[i].total, rows[i].count);
        fflush(stdout);
}

static int cmd_watch(int argc, char **argv) {
        const char *bootstrap = getenv("RILL_BOOTSTRAP_SERVERS"), *topic = "aggregated-sales";
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
                else {
                        fprintf(stderr, "salesctl: unknown watch option %s\n", argv[i]);
                        return 2;
                }
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
        int nparts = md->topics[0].partition_cnt, eofs = 0;
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(nparts);
        for (int p = 0; p < nparts; p++)
                rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
        rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        int tty = isatty(1) && !once;
        long long seen = 0;
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
                                if (d) {
                                        upsert_row(d);
                                        seen++;
                                        json_decref(d);
                                }
                        }
                        rd_kafka_message_destroy(m);
                }
                if (once && (eofs >= nparts || time(NULL) > deadline))
                        break;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (!once && (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= interval) {
                        draw(tty, seen);
                        last = now;
                }
        }
        draw(0, seen);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return 0;
}

/* ---- query ---------------------------------------------------------------------------- */

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

static int cmd_query(int argc, char **argv) {
        const char *seller = NULL, *workers = getenv("RILL_WORKERS");
        for (int i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--workers") && i + 1 < argc)
                        workers = argv[++i];
                else if (!seller && argv[i][0] != '-')
                        seller = argv[i];
                else {
                        fprintf(stderr, "salesctl: unexpected query argument %s\n", argv[i]);
                        return 2;
                }
        }
        if (!seller || !workers || !*workers) {
                fprintf(stderr, "salesctl: query needs a SELLER and --workers HOST:PORT[,...] (or RILL_WORKERS)\n");
                return 2;
        }
        curl_global_init(CURL_GLOBAL_DEFAULT);
        CURL *c = curl_easy_init();
        char *esc = curl_easy_escape(c, seller, 0);
        char *list = strdup(workers), *save = NULL;
        int rc = 1, reachable = 0;
        for (char *w = strtok_r(list, ",", &save); w && rc; w = strtok_r(NULL, ",", &save)) {
                char url[1024];
                body_t b = {NULL, 0};
                snprintf(url, sizeof(url), "http://%s/query?key=%s", w, esc);
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
                curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
                long status = 0;
                if (curl_easy_perform(c) == CURLE_OK) {
                        reachable++;
                        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                }
                json_t *d = status == 200 && b.p ? json_loads(b.p, 0, NULL) : NULL;
                if (d) {
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
                        json_decref(d);
                        rc = 0;
                }
                free(b.p);
        }
        if (rc)
                fprintf(stderr, reachable ? "salesctl: no worker holds an open window for seller %s\n"
                                          : "salesctl: no worker reachable at %s (hint: --workers HOST:PORT of the "
                                            "aggregators' --http-port)\n",
                        reachable ? seller : workers);
        free(list);
        curl_free(esc);
        curl_easy_cleanup(c);
        curl_global_cleanup();
        return rc;
}

int main(int argc, char **argv) {
        if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (!strcmp(argv[1], "watch"))
                return cmd_watch(argc - 2, argv + 2);
        if (!strcmp(argv[1], "query"))
                return cmd_query(argc - 2, argv + 2);
        fprintf(stderr, "salesctl: unknown command %s (watch or query)\n", argv[1]);
        return 2;
}
