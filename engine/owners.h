/*
 * owners.h -- which member of the application's consumer group owns which
 * aggregation partition, and where its HTTP endpoint is: what lets any worker
 * answer a query for any key (engine/http.c). See owners.c.
 */
#ifndef RILL_OWNERS_H
#define RILL_OWNERS_H

#include "peer.h"

#include <librdkafka/rdkafka.h>
#include <stdint.h>

typedef struct rill_app rill_app_t;
typedef struct rill_owners rill_owners_t;

typedef enum {
        RILL_OWNER_NONE,     /* no member of the group owns the partition now */
        RILL_OWNER_NO_HTTP,  /* a member owns it but advertises no HTTP endpoint */
        RILL_OWNER_SELF,     /* the group says this process owns it */
        RILL_OWNER_PEER,     /* another process, at host:port */
} rill_owner_kind_t;

typedef struct rill_owner {
        rill_owner_kind_t kind;
        char member[256]; /* the owner's client.id (truncated), for messages */
        char host[RILL_PEER_HOST_MAX];
        int port;
} rill_owner_t;

#define RILL_OWNERS_TTL_MS 2000      /* an answer of the group is reused this long */
#define RILL_OWNERS_DESCRIBE_MS 2500 /* bound of one DescribeConsumerGroups */
#define RILL_OWNERS_PEERS_MAX 64     /* distinct endpoints kept */

/** The client.id of a stream thread's Kafka clients: "<application.id>-
 *  <thread name>", plus the HTTP endpoint (peer.h) when http.port is set.
 *  @locality application thread (while creating the workers). */
void rill_owners_client_id(const rill_app_t *app, const char *thread_name, char *buf,
                           size_t size);

/** @returns NULL with errstr when the admin client cannot be created.
 *  @locality application thread. */
/** The repartition partition that holds key: librdkafka's default
 *  partitioner over the internal topics' partition count, as the engine's
 *  own producer keys the repartition hop; -1 when it cannot be derived
 *  (keyed input, a kafka.partitioner property, an empty key): then every
 *  owned store is scanned. @locality any thread. */
int32_t rill_owners_key_partition(const rill_app_t *app, const char *key, size_t key_len);

rill_owners_t *rill_owners_new(rill_app_t *app, char *errstr, size_t errstr_size);
void rill_owners_destroy(rill_owners_t *o);

/** The owner of aggregation partition p: from the cached group description
 *  when younger than RILL_OWNERS_TTL_MS and refresh is 0, else described
 *  again (at most every 200 ms). @returns 0 (out filled), -1 when the group
 *  cannot be described (errstr). @locality any thread (serialised inside). */
int rill_owners_get(rill_owners_t *o, int32_t p, int refresh, rill_owner_t *out, char *errstr,
                    size_t errstr_size);

/** Every distinct endpoint of the other members (for keys whose partition
 *  cannot be derived). @returns how many were written to out (at most max),
 *  -1 on error (errstr). @locality any thread. */
int rill_owners_peers(rill_owners_t *o, rill_owner_t *out, int max, char *errstr,
                      size_t errstr_size);

/** Describe group_id with rk once (bounded by timeout_ms) and call each for
 *  every member: its client.id, the host the broker sees, its assignment.
 *  Shared with salesctl (which needs an endpoint, given only the bootstrap
 *  servers). @returns the member count, -1 (errstr). @locality any thread. */
int rill_owners_describe(rd_kafka_t *rk, const char *group_id, int timeout_ms,
                         void (*each)(void *opaque, const char *client_id, const char *host,
                                      const rd_kafka_topic_partition_list_t *assignment),
                         void *opaque, char *errstr, size_t errstr_size);

#endif
