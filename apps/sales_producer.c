/*
 * sales-producer -- random sales events for the sales-usd topic, like the
 * original generator: seller_id from a list, amount_usd, sale_ts = now (or a
 * synthetic clock for reproducible loads), at a fixed rate or as fast as
 * possible, with an idempotent producer.
 *
 * Exit codes: 0 all events delivered, 1 delivery failure, 2 bad flag.
 */
#include "event.h"

#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;
static long long delivered, failed;

static void on_signal(int sig) { (void)sig, stop = 1; }

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk, (void)opaque;
        if (m->err) {
                if (!failed)
                        fprintf(stderr, "sales-producer: delivery failed: %s\n",
                                rd_kafka_err2str(m->err));
                failed++;
        } else {
                delivered++;
        }
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: reproducible with --seed, independent of libc's rand */
static uint64_t rng_state;
static uint64_t rng(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ULL;
}

static void usage(FILE *fp) {
        fprintf(fp,
                "Usage: sales-producer [options]\n"
                "  --bootstrap-servers LIST  Kafka brokers (env RILL_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)\n"
                "  --topic NAME              topic (default sales-usd)\n"
                "  --sellers A,B,...         seller ids (default seller-1,seller-2,seller-3,seller-4)\n"
                "  --num-sellers N           use N generated ids seller-1..seller-N instead\n"
                "  --rate N                  events per second, 0 = as fast as possible (default 10)\n"
                "  --count N                 stop after N events, 0 = run until stopped (default 0)\n"
                "  --seed N                  random seed for reproducible runs (default: time)\n"
                "  --keyed                   key records by seller_id (default: no key)\n"
                "  --min-amount N, --max-amount N   amount_usd range (default 1..1000)\n"
                "  --start-ts SECONDS        synthetic event time start instead of wall clock\n"
                "  --ts-step-ms N            synthetic clock step per event (default 0)\n"
                "  --ts-millis               write sale_ts in milliseconds\n"
                "  --quiet                   no progress lines\n"
                "  -X KEY=VALUE              any librdkafka property\n");
}

static int parse_ll(const char *flag, const char *s, long long min, long long *out) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min) {
                fprintf(stderr, "sales-producer: invalid value \"%s\" for --%s: expected an integer >= %lld\n",
                        s, flag, min);
                return -1;
        }
        *out = v;
        return 0;
}

int main(int argc, char **argv) {
        const char *bootstrap = getenv("RILL_BOOTSTRAP_SERVERS");
        const char *topic = "sales-usd", *sellers_arg = "seller-1,seller-2,seller-3,seller-4";
        long long rate = 10, count = 0, seed = (long long)time(NULL), min_amt = 1, max_amt = 1000;
        long long num_sellers = 0, start_ts = -1, ts_step = 0;
        int keyed = 0, quiet = 0, ts_millis = 0;
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        static const struct option opts[] = {
            {"bootstrap-servers", 1, 0, 'b'}, {"topic", 1, 0, 't'},   {"sellers", 1, 0, 's'},
            {"num-sellers", 1, 0, 'n'},       {"rate", 1, 0, 'r'},    {"count", 1, 0, 'c'},
            {"seed", 1, 0, 'S'},              {"keyed", 0, 0, 'k'},   {"min-amount", 1, 0, 'm'},
            {"max-amount", 1, 0, 'M'},        {"start-ts", 1, 0, 'T'}, {"ts-step-ms", 1, 0, 'p'},
            {"ts-millis", 0, 0, 'i'},         {"quiet", 0, 0, 'q'},   {"help", 0, 0, 'h'},
            {0, 0, 0, 0}};
        int o;
        opterr = 0;
        while ((o = getopt_long(argc, argv, ":X:h", opts, NULL)) != -1) {
                int bad = 0;
                switch (o) {
                case 'b': bootstrap = optarg; break;
                case 't': topic = optarg; break;
                case 's': sellers_arg = optarg; break;
                case 'n': bad = parse_ll("num-sellers", optarg, 1, &num_sellers); break;
                case 'r': bad = parse_ll("rate", optarg, 0, &rate); break;
                case 'c': bad = parse_ll("count", optarg, 0, &count); break;
                case 'S': bad = parse_ll("seed", optarg, 0, &seed); break;
                case 'k': keyed = 1; break;
                case 'm': bad = parse_ll("min-amount", optarg, 0, &min_amt); break;
                case 'M': bad = parse_ll("max-amount", optarg, 0, &max_amt); break;
                case 'T': bad = parse_ll("start-ts", optarg, 0, &start_ts); break;
                case 'p': bad = parse_ll("ts-step-ms", optarg, 0, &ts_step); break;
                case 'i': ts_millis = 1; break;
                case 'q': quiet = 1; break;
                case 'h': usage(stdout); rd_kafka_conf_destroy(conf); return 0;
                case 'X': {
                        char *eq = strchr(optarg, '=');
                        if (!eq) {
                                fprintf(stderr, "sales-producer: -X needs KEY=VALUE, got \"%s\"\n", optarg);
                                bad = 1;
                                break;
                        }
                        *eq = '\0';
                        if (rd_kafka_conf_set(conf, optarg, eq + 1, err, sizeof(err))) {
                                fprintf(stderr, "sales-producer: -X %s: %s\n", optarg, err);
                                bad = 1;
                        }
                        break;
                }
                case ':':
                        fprintf(stderr, "sales-producer: flag %s needs a value (see --help)\n", argv[optind - 1]);
                        bad = 1;
                        break;
                default:
                        fprintf(stderr, "sales-producer: unknown flag %s (see --help)\n", argv[optind - 1]);
                        bad = 1;
                }
                if (bad) {
                        rd_kafka_conf_destroy(conf);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "sales-producer: unexpected argument \"%s\" (see --help)\n", argv[optind]);
                rd_kafka_conf_destroy(conf);
                return 2;
        }
        if (min_amt > max_amt) {
                fprintf(stderr, "sales-producer: --min-amount %lld is above --max-amount %lld\n", min_amt, max_amt);
                rd_kafka_conf_destroy(conf);
                return 2;
        }
        /* the seller list */
        char **sellers = NULL;
        size_t nsellers = 0;
        if (num_sellers) {
                sellers = calloc((size_t)num_sellers, sizeof(*sellers));
                for (long long i = 0; i < num_sellers; i++) {
                        char buf[32];
                        snprintf(buf, sizeof(buf), "seller-%lld", i + 1);
                        sellers[nsellers++] = strdup(buf);
                }
        } else {
                char *list = strdup(sellers_arg), *save = NULL;
                for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
                        sellers = realloc(sellers, (nsellers + 1) * sizeof(*sellers));
                        sellers[nsellers++] = strdup(s);
                }
                free(list);
                if (!nsellers) {
                        fprintf(stderr, "sales-producer: --sellers needs at least one seller id\n");
                        rd_kafka_conf_destroy(conf);
                        return 2;
                }
        }
        rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 1;

        rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap ? bootstrap : "127.0.0.1:9092", err, sizeof(err));
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err));
        if (rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err)))
                fprintf(stderr, "sales-producer: %s\n", err);
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "sales-producer: cannot create producer: %s\n", err);
                return 2;
        }
        /* fail fast with one line when the broker or topic is missing */
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t merr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (merr || md->topic_cnt != 1 || md->topics[0].err) {
                fprintf(stderr, "sales-producer: %s %s on %s: %s\n",
                        merr ? "cannot reach Kafka for topic" : "cannot use topic", topic,
                        bootstrap ? bootstrap : "127.0.0.1:9092",
                        rd_kafka_err2str(merr ? merr : md->topics[0].err));
                if (md)
                        rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
                rd_kafka_destroy(rk);
                return 1;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);

        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        double t0 = now_s(), last = t0;
        long long sent = 0, last_sent = 0;
        char buf[2048], key[1100];
        while (!stop && (!count || sent < count)) {
                if (rate > 0) {
                        double due = t0 + (double)sent / (double)rate;
                        double wait = due - now_s();
                        if (wait > 0) {
                                rd_kafka_poll(rk, (int)(wait * 1000) + 1);
                                continue;
                        }
                }
                const char *seller = sellers[rng() % nsellers];
                long long amount = min_amt + (long long)(rng() % (uint64_t)(max_amt - min_amt + 1));
                long long ts;
                if (start_ts >= 0)
                        ts = start_ts * 1000 + sent * ts_step;
                else {
                        struct timespec w;
                        clock_gettime(CLOCK_REALTIME, &w);
                        ts = (long long)w.tv_sec * 1000 + w.tv_nsec / 1000000;
                }
                size_t kl = sales_json_string(seller, strlen(seller), key, sizeof(key));
                int n = snprintf(buf, sizeof(buf), "{\"seller_id\":%s,\"amount_usd\":%lld,\"sale_ts\":%lld}",
                                 key, amount, ts_millis ? ts : ts / 1000);
                (void)kl;
                rd_kafka_vu_t vu[4];
                size_t nvu = 0;
                vu[nvu].vtype = RD_KAFKA_VTYPE_TOPIC, vu[nvu++].u.cstr = topic;
                vu[nvu].vtype = RD_KAFKA_VTYPE_VALUE, vu[nvu].u.mem.ptr = buf, vu[nvu++].u.mem.size = (size_t)n;
                vu[nvu].vtype = RD_KAFKA_VTYPE_MSGFLAGS, vu[nvu++].u.i = RD_KAFKA_MSG_F_COPY;
                if (keyed)
                        vu[nvu].vtype = RD_KAFKA_VTYPE_KEY, vu[nvu].u.mem.ptr = (void *)seller,
                        vu[nvu++].u.mem.size = strlen(seller);
                rd_kafka_resp_err_t e;
                for (;;) {
                        rd_kafka_error_t *pe = rd_kafka_produceva(rk, vu, nvu);
                        e = pe ? rd_kafka_error_code(pe) : RD_KAFKA_RESP_ERR_NO_ERROR;
                        if (pe)
                                rd_kafka_error_destroy(pe);
                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                break;
                        rd_kafka_poll(rk, 50);
                }
                if (e) {
                        fprintf(stderr, "sales-producer: cannot produce: %s\n", rd_kafka_err2str(e));
                        break;
                }
                sent++;
                rd_kafka_poll(rk, 0);
                double now = now_s();
                if (!quiet && now - last >= 1.0) {
                        fprintf(stderr, "sales-producer: sent=%lld delivered=%lld rate=%.0f/s\n", sent,
                                delivered, (double)(sent - last_sent) / (now - last));
                        last = now;
                        last_sent = sent;
                }
        }
        rd_kafka_flush(rk, 30000);
        double el = now_s() - t0;
        fprintf(stderr, "sales-producer: done sent=%lld delivered=%lld failed=%lld elapsed_s=%.2f rate=%.0f/s\n",
                sent, delivered, failed, el, el > 0 ? (double)delivered / el : 0.0);
        rd_kafka_destroy(rk);
        for (size_t i = 0; i < nsellers; i++)
                free(sellers[i]);
        free(sellers);
        return failed || delivered < sent ? 1 : 0;
}
