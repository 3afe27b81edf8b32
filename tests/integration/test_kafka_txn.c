/* Integration: the broker properties the engine's exactly-once rests on,
 * checked with the engine's own librdkafka against the real local broker:
 *   - an aborted transaction is invisible to read_committed, a committed one
 *     is visible (and read_uncommitted does see the aborted records, so the
 *     check can tell the difference);
 *   - consumer offsets sent with a transaction commit with it, and only then;
 *   - a second producer with the same transactional.id fences the first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "itest.h"
#include "kafka_admin.h"

static char err[512];

static void create_topic(const char *topic) {
        rd_kafka_t *rk = itest_client(RD_KAFKA_PRODUCER, NULL);
        /* the error, not only the status: one clean-clone CI check failed
         * here once (the third test's topic) with nothing else to go on */
        if (rill_kafka_create_topic(rk, topic, 1, NULL, 15000, err, sizeof(err)))
                fail_msg("%s", err);
        int n = rill_kafka_partition_count(rk, topic, 10000, err, sizeof(err));
        if (n != 1)
                fail_msg("topic %s: %d partitions, want 1 (%s)", topic, n, n < 0 ? err : "");
        rd_kafka_destroy(rk);
}

static rd_kafka_t *txn_producer(const char *txn_id) {
        const char *kv[] = {"transactional.id", txn_id, "transaction.timeout.ms", "10000", NULL};
        rd_kafka_t *rk = itest_client(RD_KAFKA_PRODUCER, kv);
        rd_kafka_error_t *e = rd_kafka_init_transactions(rk, 30000);
        if (e)
                fail_msg("init_transactions: %s", rd_kafka_error_string(e));
        return rk;
}

static void produce_n(rd_kafka_t *rk, const char *topic, int n, const char *tag) {
        for (int i = 0; i < n; i++)
                assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                                   RD_KAFKA_V_VALUE((void *)tag, strlen(tag)),
                                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                   RD_KAFKA_V_END),
                                 0);
}

static void aborted_invisible_committed_visible(void **s) {
        (void)s;
        char topic[128], txn[160];
        itest_topic_name(topic, sizeof(topic), "abort");
        snprintf(txn, sizeof(txn), "%s-txn", topic);
        create_topic(topic);
        rd_kafka_t *p = txn_producer(txn);
        assert_null(rd_kafka_begin_transaction(p));
        produce_n(p, topic, 5, "aborted");
        assert_int_equal(rd_kafka_flush(p, 10000), 0);
        assert_null(rd_kafka_abort_transaction(p, 30000));
        assert_null(rd_kafka_begin_transaction(p));
        produce_n(p, topic, 3, "committed");
        assert_null(rd_kafka_commit_transaction(p, 30000));
        rd_kafka_destroy(p);
        assert_int_equal(itest_count(topic, "read_committed", 30000), 3);
        assert_int_equal(itest_count(topic, "read_uncommitted", 30000), 8);
}

static int64_t committed_offset(const char *group, const char *topic) {
        const char *kv[] = {"group.id", group, NULL};
        rd_kafka_t *c = itest_client(RD_KAFKA_CONSUMER, kv);
        rd_kafka_topic_partition_list_t *p = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(p, topic, 0);
        assert_int_equal(rd_kafka_committed(c, p, 10000), 0);
        int64_t off = p->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(p);
        rd_kafka_destroy(c);
        return off;
}

static void offsets_commit_with_transaction(void **s) {
        (void)s;
        char topic[128], out[140], txn[160], group[160];
        itest_topic_name(topic, sizeof(topic), "offsets");
        snprintf(out, sizeof(out), "%s-out", topic);
        snprintf(txn, sizeof(txn), "%s-txn", topic);
        snprintf(group, sizeof(group), "%s-group", topic);
        create_topic(topic);
        create_topic(out);
        rd_kafka_t *p = txn_producer(txn);
        rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata_new(group);
        rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(offs, topic, 0)->offset = 10;
        /* aborted: the offset must not be committed */
        assert_null(rd_kafka_begin_transaction(p));
        produce_n(p, out, 1, "x");
        assert_null(rd_kafka_send_offsets_to_transaction(p, offs, cgmd, 30000));
        assert_null(rd_kafka_abort_transaction(p, 30000));
        assert_int_equal(committed_offset(group, topic), RD_KAFKA_OFFSET_INVALID);
        /* committed: now it is */
        assert_null(rd_kafka_begin_transaction(p));
        produce_n(p, out, 1, "y");
        assert_null(rd_kafka_send_offsets_to_transaction(p, offs, cgmd, 30000));
        assert_null(rd_kafka_commit_transaction(p, 30000));
        assert_int_equal(committed_offset(group, topic), 10);
        rd_kafka_topic_partition_list_destroy(offs);
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        rd_kafka_destroy(p);
        assert_int_equal(itest_count(out, "read_committed", 30000), 1);
}

static void same_transactional_id_fences(void **s) {
        (void)s;
        char topic[128], txn[160];
        itest_topic_name(topic, sizeof(topic), "fence");
        snprintf(txn, sizeof(txn), "%s-txn", topic);
        create_topic(topic);
        rd_kafka_t *a = txn_producer(txn);
        assert_null(rd_kafka_begin_transaction(a));
        produce_n(a, topic, 2, "zombie");
        rd_kafka_flush(a, 10000);
        rd_kafka_t *b = txn_producer(txn); /* bumps the epoch, aborts a's open txn */
        rd_kafka_error_t *e = rd_kafka_commit_transaction(a, 30000);
        assert_non_null(e);
        assert_true(rd_kafka_error_is_fatal(e));
        rd_kafka_error_destroy(e);
        assert_null(rd_kafka_begin_transaction(b));
        produce_n(b, topic, 1, "live");
        assert_null(rd_kafka_commit_transaction(b, 30000));
        rd_kafka_destroy(a);
        rd_kafka_destroy(b);
        assert_int_equal(itest_count(topic, "read_committed", 30000), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {cmocka_unit_test(aborted_invisible_committed_visible),
                                           cmocka_unit_test(offsets_commit_with_transaction),
                                           cmocka_unit_test(same_transactional_id_fences)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
