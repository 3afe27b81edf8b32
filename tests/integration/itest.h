/* Helpers shared by the C integration tests: the local stack's settings
 * (from deploy/local/up's env file, via tests/run) and bounded Kafka reads. */
#ifndef RILL_ITEST_H
#define RILL_ITEST_H
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline const char *itest_env(const char *name) {
        const char *v = getenv(name);
        if (!v || !*v) {
                fprintf(stderr, "%s is not set: start the stack with deploy/local/up and source "
                                "$RILL_RUN_DIR/env (tests/run does both)\n", name);
                exit(1);
        }
        return v;
}

static inline void itest_topic_name(char *buf, size_t size, const char *what) {
        snprintf(buf, size, "itest-%s-%d-%ld", what, (int)getpid(), (long)time(NULL));
}

static inline rd_kafka_t *itest_client(rd_kafka_type_t type, const char *const *kv) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", itest_env("RILL_BOOTSTRAP_SERVERS"), err, sizeof(err));
        for (int i = 0; kv && kv[i]; i += 2)
                if (rd_kafka_conf_set(c, kv[i], kv[i + 1], err, sizeof(err))) {
                        fprintf(stderr, "config %s: %s\n", kv[i], err);
                        exit(1);
                }
        rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "client: %s\n", err);
                exit(1);
        }
        return rk;
}

/* Count the records of partition 0 visible under an isolation level, reading
 * until the consumer position reaches the end offset (never "saw end-1":
 * the last offset is usually a transaction marker). -1 on timeout. */
static inline int itest_count(const char *topic, const char *isolation, int timeout_ms) {
        const char *kv[] = {"isolation.level", isolation, "enable.partition.eof", "true",
                            "group.id", "itest-reader", "enable.auto.commit", "false", NULL};
        rd_kafka_t *rk = itest_client(RD_KAFKA_CONSUMER, kv);
        rd_kafka_poll_set_consumer(rk);
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000)) {
                rd_kafka_destroy(rk);
                return -1;
        }
        rd_kafka_topic_partition_list_t *p = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(p, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, p);
        rd_kafka_topic_partition_list_destroy(p);
        int n = 0, done = hi == 0;
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (!done) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                if ((now.tv_sec - t0.tv_sec) * 1000 > timeout_ms) {
                        n = -1;
                        break;
                }
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        done = m->offset >= hi;
                else if (!m->err)
                        n++;
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return n;
}
#endif
