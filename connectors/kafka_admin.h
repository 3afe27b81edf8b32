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
#endif
