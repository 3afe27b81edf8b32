/*
 * kafka_admin.c -- see kafka_admin.h. Uses the metadata request for
 * existence and the Admin API (CreateTopics) on a temporary queue.
 */
#include "kafka_admin.h"

#include <stdio.h>
#include <string.h>

int rill_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                               char *errstr, size_t errstr_size) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
        rd_kafka_topic_destroy(rkt);
        if (err) {
                snprintf(errstr, errstr_size, "cannot read metadata of topic %s: %s", topic,
                         rd_kafka_err2str(err));
                return -1;
        }
        int n = 0;
        if (md->topic_cnt == 1 && !md->topics[0].err)
                n = md->topics[0].partition_cnt;
        else if (md->topic_cnt == 1 &&
                 md->topics[0].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                snprintf(errstr, errstr_size, "cannot read metadata of topic %s: %s", topic,
                         rd_kafka_err2str(md->topics[0].err));
                n = -1;
        }
        rd_kafka_metadata_destroy(md);
        return n;
}

int rill_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                            const char *cleanup_policy, int timeout_ms, char *errstr,
                            size_t errstr_size) {
        char err[256];
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, -1, err, sizeof(err));
        if (!nt) {
                snprintf(errstr, errstr_size, "cannot create topic %s: %s", topic, err);
                return -1;
        }
        if (cleanup_policy)
                rd_kafka_NewTopic_set_config(nt, "cleanup.policy", cleanup_policy);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, err, sizeof(err));
        rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
        int rc = -1;
        if (!ev) {
                snprintf(errstr, errstr_size, "cannot create topic %s: timed out", topic);
        } else if (rd_kafka_event_error(ev)) {
                snprintf(errstr, errstr_size, "cannot create topic %s: %s", topic,
                         rd_kafka_event_error_string(ev));
        } else {
                size_t cnt;
                const rd_kafka_topic_result_t **res =
                    rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
                rd_kafka_resp_err_t e = cnt ? rd_kafka_topic_result_error(res[0]) : 0;
                if (!e || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                        rc = 0;
                else
                        snprintf(errstr, errstr_size, "cannot create topic %s: %s", topic,
                                 rd_kafka_topic_result_error_string(res[0]));
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
        return rc;
}

rd_kafka_resp_err_t rill_kafka_list_offsets(rd_kafka_t *rk,
                                            rd_kafka_topic_partition_list_t *parts, int64_t ts,
                                            int timeout_ms) {
        for (int i = 0; i < parts->cnt; i++)
                parts->elems[i].offset = ts;
        if (!parts->cnt)
                return RD_KAFKA_RESP_ERR_NO_ERROR;
        return rd_kafka_offsets_for_times(rk, parts, timeout_ms);
}

int rill_kafka_err_unreachable(rd_kafka_resp_err_t err) {
        switch (err) {
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
                return 1;
        default:
                return 0;
        }
}
