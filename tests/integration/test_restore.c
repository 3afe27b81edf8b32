/* Integration: restore reads the changelog to its real end, against the real
 * local broker.
 *   - The end is the read_uncommitted high watermark, not the last stable
 *     offset: a transaction of the previous owner that is still open (or
 *     committed with its markers not yet written) when the restore starts is
 *     waited for, bounded, and its records are restored once it commits
 *     (review finding 1: restore stopped at the LSO and lost them).
 *   - An open transaction that is aborted is skipped, and the restore ends.
 *   - A transaction that stays open past the restore timeout fails the
 *     restore with a clear error instead of completing without it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include "itest.h"
#include "codec.h"
#include "kafka_admin.h"
#include "restore.h"
#include "wstore.h"

static char err[512];

static void create_topic(const char *topic) {
        rd_kafka_t *rk = itest_client(RD_KAFKA_PRODUCER, NULL);
        assert_int_equal(rill_kafka_create_topic(rk, topic, 1, NULL, 15000, err, sizeof(err)), 0);
        rd_kafka_destroy(rk);
}

static rd_kafka_t *txn_producer(const char *txn_id) {
        const char *kv[] = {"transactional.id", txn_id, "transaction.timeout.ms", "60000", NULL};
        rd_kafka_t *rk = itest_client(RD_KAFKA_PRODUCER, kv);
        rd_kafka_error_t *e = rd_kafka_init_transactions(rk, 30000);
        if (e)
                fail_msg("init_transactions: %s", rd_kafka_error_string(e));
        return rk;
}

/* One changelog record: window (wstart, key) with sum. */
static void produce_window(rd_kafka_t *rk, const char *topic, int64_t wstart, const char *key,
                           int64_t sum) {
        unsigned char k[64], v[64];
        size_t kl = rill_wkey_encode(wstart, key, strlen(key), k);
        rill_agg_t a = {sum, 1, wstart, wstart};
        size_t vl = rill_agg_encode(&a, v, sizeof(v));
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                           RD_KAFKA_V_KEY(k, kl), RD_KAFKA_V_VALUE(v, vl),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                         0);
}

static rill_restorer_t *restorer(void) {
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", itest_env("RILL_BOOTSTRAP_SERVERS"), err, sizeof(err));
        rill_restorer_t *r = rill_restorer_new(c, 1000, err, sizeof(err));
        if (!r)
                fail_msg("restorer: %s", err);
        return r;
}

static rill_wstore_t *fresh_store(char *dir, size_t size) {
        snprintf(dir, size, "/tmp/rill-itest-restore-XXXXXX");
        assert_non_null(mkdtemp(dir));
        int wiped = 0;
        rill_wstore_t *ws = rill_wstore_open(dir, "itest|restore|0", &wiped, err, sizeof(err));
        if (!ws)
                fail_msg("open store: %s", err);
        return ws;
}

static int64_t sum_of(rill_wstore_t *ws, int64_t wstart, const char *key) {
        rill_agg_t a;
        int found = rill_wstore_get(ws, wstart, key, strlen(key), &a, err, sizeof(err));
        assert_true(found >= 0);
        return found ? a.sum : -1;
}

typedef struct ender {
        rd_kafka_t *rk;
        int commit; /* 1 commit, 0 abort */
        int delay_ms;
} ender_t;

static void *end_later(void *arg) {
        ender_t *e = arg;
        usleep((useconds_t)e->delay_ms * 1000);
        rd_kafka_error_t *x = e->commit ? rd_kafka_commit_transaction(e->rk, 30000)
                                        : rd_kafka_abort_transaction(e->rk, 30000);
        if (x) {
                fprintf(stderr, "end transaction: %s\n", rd_kafka_error_string(x));
                rd_kafka_error_destroy(x);
        }
        return NULL;
}

/* committed A; open transaction B; restore starts; B ends 1.5 s later. */
static void restore_with_open_transaction(int commit) {
        char topic[128], txn[200], dir[64];
        itest_topic_name(topic, sizeof(topic), commit ? "rst-open-commit" : "rst-open-abort");
        create_topic(topic);
        snprintf(txn, sizeof(txn), "%s-a", topic);
        rd_kafka_t *a = txn_producer(txn);
        assert_null(rd_kafka_begin_transaction(a));
        produce_window(a, topic, 60000, "seller-a", 11);
        assert_null(rd_kafka_commit_transaction(a, 30000));
        rd_kafka_destroy(a);
        snprintf(txn, sizeof(txn), "%s-b", topic);
        rd_kafka_t *b = txn_producer(txn);
        assert_null(rd_kafka_begin_transaction(b));
        produce_window(b, topic, 60000, "seller-b", 22);
        produce_window(b, topic, 60000, "seller-a", 33);
        assert_int_equal(rd_kafka_flush(b, 10000), 0);

        rill_wstore_t *ws = fresh_store(dir, sizeof(dir));
        rill_restorer_t *r = restorer();
        ender_t e = {b, commit, 1500};
        pthread_t th;
        pthread_create(&th, NULL, end_later, &e);
        rill_restore_stats_t st;
        int rc = rill_restore(r, ws, topic, 0, 30000, &st, err, sizeof(err));
        pthread_join(th, NULL);
        if (rc)
                fail_msg("restore: %s", err);
        if (commit) {
                /* B's records are restored: the restore waited for B */
                assert_int_equal(sum_of(ws, 60000, "seller-b"), 22);
                assert_int_equal(sum_of(ws, 60000, "seller-a"), 33);
        } else {
                assert_int_equal(sum_of(ws, 60000, "seller-b"), -1);
                assert_int_equal(sum_of(ws, 60000, "seller-a"), 11);
        }
        /* the store is at the end: a second restore has nothing to read */
        rill_restore_stats_t st2;
        assert_int_equal(rill_restore(r, ws, topic, 0, 30000, &st2, err, sizeof(err)), 0);
        assert_int_equal(st2.records, 0);
        rill_restorer_destroy(r);
        rill_wstore_close(ws);
        rd_kafka_destroy(b);
        rill_wstore_wipe(dir, err, sizeof(err));
}

static void open_transaction_committed_during_restore_is_restored(void **s) {
        (void)s;
        restore_with_open_transaction(1);
}

static void open_transaction_aborted_during_restore_is_skipped(void **s) {
        (void)s;
        restore_with_open_transaction(0);
}

static void transaction_open_past_the_timeout_fails_the_restore(void **s) {
        (void)s;
        char topic[128], txn[200], dir[64];
        itest_topic_name(topic, sizeof(topic), "rst-stuck");
        create_topic(topic);
        snprintf(txn, sizeof(txn), "%s-b", topic);
        rd_kafka_t *b = txn_producer(txn);
        assert_null(rd_kafka_begin_transaction(b));
        produce_window(b, topic, 60000, "seller-b", 22);
        assert_int_equal(rd_kafka_flush(b, 10000), 0);
        rill_wstore_t *ws = fresh_store(dir, sizeof(dir));
        rill_restorer_t *r = restorer();
        rill_restore_stats_t st;
        assert_int_equal(rill_restore(r, ws, topic, 0, 2000, &st, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "did not reach end offset"));
        assert_null(rd_kafka_abort_transaction(b, 30000));
        rill_restorer_destroy(r);
        rill_wstore_close(ws);
        rd_kafka_destroy(b);
        rill_wstore_wipe(dir, err, sizeof(err));
}

int main(void) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(open_transaction_committed_during_restore_is_restored),
            cmocka_unit_test(open_transaction_aborted_during_restore_is_skipped),
            cmocka_unit_test(transaction_open_past_the_timeout_fails_the_restore)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
