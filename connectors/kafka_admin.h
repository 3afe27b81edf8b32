/*
 * kafka_admin.h -- topic metadata and creation, the little admin the engine
 * needs at start: check the user's topics exist, create internal ones.
 * @locality application thread (blocking calls with timeouts).
 */
#ifndef RILL_KAFKA_ADMIN_H
#define RILL_KAFKA_ADMIN_H
#include <librdkafka/rdkafka.h>

/** @returns the partition count of topic, 0 if it does not exist, -1 on
 *  error (errstr: typically the broker is unreachable). */
int rill_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
                               char *errstr, size_t errstr_size);

/** Create topic with partitions and optional cleanup.policy ("compact" or
 *  NULL); an existing topic is fine. Replication factor: -1 (broker default).
 *  @returns 0 or -1 (errstr). */
int rill_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                            const char *cleanup_policy, int timeout_ms, char *errstr,
                            size_t errstr_size);

/** One ListOffsets request per leader for every partition of parts, each
 *  asked at ts (-2 the log start, -1 its end, else a timestamp); answers in
 *  parts->elems[i].offset / .err. By rd_kafka_offsets_for_times, because
 *  rd_kafka_query_watermark_offsets does not honour its timeout in librdkafka
 *  2.0.2 (it retries a request to a leader that is down until the leader is
 *  back; fixed in 2.3.0): this call gives up at timeout_ms. Any request to a
 *  partition's leader also wakes that leader's broker thread, which is how
 *  the engine nudges a fetcher that librdkafka 2.0.2 left asleep.
 *  @returns the request's error (0 when sent and answered). */
rd_kafka_resp_err_t rill_kafka_list_offsets(rd_kafka_t *rk,
                                            rd_kafka_topic_partition_list_t *parts, int64_t ts,
                                            int timeout_ms);

/* The bound of a ListOffsets sent only to wake a fetcher (its answer is not
 * used): enough to send the request, which is what wakes the leader's broker
 * thread; librdkafka drops a later answer. */
#define RILL_KAFKA_NUDGE_TIMEOUT_MS 5

/** 1 when err says only that the broker (or a partition's leader) could not
 *  be reached or answered in time: worth trying again later, unlike an
 *  error of the request itself. Not __UNKNOWN_PARTITION: librdkafka 2.0.2
 *  answers that for any partition without a usable leader, a deleted topic
 *  or a denied one included; the partition's own error says which. */
int rill_kafka_err_unreachable(rd_kafka_resp_err_t err);
#endif
