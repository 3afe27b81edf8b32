/*
 * owners.c -- owner discovery for interactive queries, with no extra server.
 *
 * Every stream thread's consumer is a member of the application's group
 * (group.id = application.id) and advertises its process's HTTP endpoint in
 * its client.id (peer.h). The group coordinator already knows, per member,
 * that client.id, the host it connects from and the partitions the group
 * leader assigned it; DescribeConsumerGroups (admin API, librdkafka >= 2.0)
 * returns all three. So a worker asked for a key it does not own computes
 * the key's partition (http.c: the repartition hop's partitioner), looks the
 * partition up here, and forwards the query to the owner's endpoint.
 *
 * The description is cached for RILL_OWNERS_TTL_MS and described again on a
 * miss or when the forward shows it is stale (the caller asks for a
 * refresh), at most every 200 ms; one description runs at a time, bounded by
 * RILL_OWNERS_DESCRIBE_MS. The cache is only a hint: the member it names
 * checks its own tasks before answering (http.c), so a stale entry costs a
 * refusal and a refresh, never a wrong answer.
 *
 * @locality rill_owners_client_id on the application thread; everything else
 * on libmicrohttpd's connection threads, serialised by the owners lock.
 */
#include "owners.h"
#include "internal.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFRESH_MIN_MS 200

struct rill_owners {
        rill_app_t *app;
        rd_kafka_t *rk; /* admin client */
        const char *topic; /* the aggregation tasks' topic */
        pthread_mutex_t lock;
        int64_t fetched_ms, tried_ms; /* mono; 0 = never; tried: when the last describe ended */
        char tried_err[512];          /* its error, "" when it succeeded */
        rill_owner_t *parts;          /* [app->partitions] */
        rill_owner_t peers[RILL_OWNERS_PEERS_MAX];
        int npeers;
};

/* ---- the advertisement and the member that is this process ------------------------- */

void rill_owners_client_id(const rill_app_t *app, const char *thread_name, char *buf,
                           size_t size) {
        char base[400];
        snprintf(base, sizeof(base), "%s-%s", app->app_id, thread_name);
        int64_t port = rill_conf_get_int(app->conf, "http.port");
        if (port <= 0 || rill_peer_advertise(buf, size, base, "", (int)port))
                snprintf(buf, size, "%s", base);
}

/* Is client_id one of this process's threads: "<app>-<process>-<n>[tag...]"? */
static int is_self(const rill_app_t *app, const char *client_id) {
        size_t a = strlen(app->app_id), p = strlen(app->process_id);
        if (strncmp(client_id, app->app_id, a) || client_id[a] != '-' ||
            strncmp(client_id + a + 1, app->process_id, p) || client_id[a + 1 + p] != '-')
                return 0;
        const char *s = client_id + a + p + 2;
        if (*s < '0' || *s > '9')
                return 0;
        while (*s >= '0' && *s <= '9')
                s++;
        return !*s || !strncmp(s, RILL_PEER_TAG, strlen(RILL_PEER_TAG));
}

/* ---- describing the group ---------------------------------------------------------- */

int rill_owners_describe(rd_kafka_t *rk, const char *group_id, int timeout_ms,
                         void (*each)(void *opaque, const char *client_id, const char *host,
                                      const rd_kafka_topic_partition_list_t *assignment),
                         void *opaque, char *errstr, size_t errstr_size) {
        char err[256];
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opt =
                rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
        rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, err, sizeof(err));
        const char *groups[1] = {group_id};
        rd_kafka_DescribeConsumerGroups(rk, groups, 1, opt, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 500);
        int rc = -1;
        if (!ev) {
                snprintf(errstr, errstr_size, "no answer to DescribeConsumerGroups %s within %d ms",
                         group_id, timeout_ms + 500);
                goto done;
        }
        if (rd_kafka_event_error(ev)) {
                snprintf(errstr, errstr_size, "DescribeConsumerGroups %s: %s", group_id,
                         rd_kafka_event_error_string(ev));
                goto done;
        }
        size_t n = 0;
        const rd_kafka_DescribeConsumerGroups_result_t *res =
                rd_kafka_event_DescribeConsumerGroups_result(ev);
        const rd_kafka_ConsumerGroupDescription_t **g =
                res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
        if (!n) {
                snprintf(errstr, errstr_size, "DescribeConsumerGroups %s: no group in the answer",
                         group_id);
                goto done;
        }
        const rd_kafka_error_t *ge = rd_kafka_ConsumerGroupDescription_error(g[0]);
        if (ge) {
                snprintf(errstr, errstr_size, "DescribeConsumerGroups %s: %s", group_id,
                         rd_kafka_error_string(ge));
                goto done;
        }
        size_t members = rd_kafka_ConsumerGroupDescription_member_count(g[0]);
        for (size_t i = 0; i < members; i++) {
                const rd_kafka_MemberDescription_t *m = rd_kafka_ConsumerGroupDescription_member(g[0], i);
                const rd_kafka_MemberAssignment_t *a = rd_kafka_MemberDescription_assignment(m);
                const char *cid = rd_kafka_MemberDescription_client_id(m);
                each(opaque, cid ? cid : "", rd_kafka_MemberDescription_host(m),
                     a ? rd_kafka_MemberAssignment_partitions(a) : NULL);
        }
        rc = (int)members;
done:
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_queue_destroy(q);
        return rc;
}

typedef struct fill {
        rill_owners_t *o;
        rill_owner_t *parts;
        rill_owner_t peers[RILL_OWNERS_PEERS_MAX];
        int npeers;
} fill_t;

static void fill_member(void *opaque, const char *client_id, const char *host,
                        const rd_kafka_topic_partition_list_t *assignment) {
        fill_t *f = opaque;
        rill_owners_t *o = f->o;
        rill_owner_t ow = {0};
        snprintf(ow.member, sizeof(ow.member), "%s", client_id);
        if (is_self(o->app, client_id))
                ow.kind = RILL_OWNER_SELF;
        else if (!rill_peer_endpoint(client_id, host, ow.host, sizeof(ow.host), &ow.port))
                ow.kind = RILL_OWNER_PEER;
        else
                ow.kind = RILL_OWNER_NO_HTTP;
        if (ow.kind == RILL_OWNER_PEER) {
                int known = 0;
                for (int i = 0; i < f->npeers && !known; i++)
                        known = f->peers[i].port == ow.port && !strcmp(f->peers[i].host, ow.host);
                if (!known && f->npeers < RILL_OWNERS_PEERS_MAX)
                        f->peers[f->npeers++] = ow;
        }
        for (int i = 0; assignment && i < assignment->cnt; i++) {
                const rd_kafka_topic_partition_t *tp = &assignment->elems[i];
                if (!strcmp(tp->topic, o->topic) && tp->partition >= 0 &&
                    tp->partition < o->app->partitions)
                        f->parts[tp->partition] = ow;
        }
}

/* Describe again when due (or asked), but not within REFRESH_MIN_MS of the
 * end of the last describe: the last description is the answer then, or,
 * when there is none, the last describe's error.
 * Handlers that queued on the lock behind a describe that failed (a broker
 * down: each takes up to RILL_OWNERS_DESCRIBE_MS) get its error at once
 * instead of describing again one after another.
 * @locks o->lock held. */
static int refresh(rill_owners_t *o, int force, char *errstr, size_t errstr_size) {
        int64_t now = rill_now_mono_ms();
        int due = !o->fetched_ms || now - o->fetched_ms >= RILL_OWNERS_TTL_MS || force;
        if (!due)
                return 0;
        if (o->tried_ms && now - o->tried_ms < REFRESH_MIN_MS) {
                if (o->fetched_ms) /* the last description, however old */
                        return 0;
                snprintf(errstr, errstr_size, "%s", o->tried_err);
                return -1;
        }
        fill_t *f = calloc(1, sizeof(*f));
        f->o = o;
        f->parts = calloc((size_t)o->app->partitions, sizeof(*f->parts));
        int n = rill_owners_describe(o->rk, o->app->app_id, RILL_OWNERS_DESCRIBE_MS, fill_member,
                                     f, errstr, errstr_size);
        if (n >= 0) {
                memcpy(o->parts, f->parts, (size_t)o->app->partitions * sizeof(*o->parts));
                memcpy(o->peers, f->peers, sizeof(o->peers));
                o->npeers = f->npeers;
                o->fetched_ms = rill_now_mono_ms();
                o->tried_err[0] = '\0';
        } else {
                rill_log(RILL_LOG_WARN, "owners_unknown", "group=%s error=\"%s\"", o->app->app_id,
                         errstr);
                snprintf(o->tried_err, sizeof(o->tried_err), "%s", errstr);
        }
        o->tried_ms = rill_now_mono_ms();
        free(f->parts);
        free(f);
        return n < 0 ? -1 : 0;
}

/* ---- the cache --------------------------------------------------------------------- */

static void put_prop(const char *key, const char *value, void *opaque) {
        char err[256];
        rd_kafka_conf_set(opaque, key, value, err, sizeof(err));
}

rill_owners_t *rill_owners_new(rill_app_t *app, char *errstr, size_t errstr_size) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", app->bootstrap, err, sizeof(err));
        rd_kafka_conf_set(c, "log.connection.close", "false", err, sizeof(err));
        /* the same security settings (TLS, SASL) as the stream threads' clients */
        rill_conf_foreach_kafka(app->conf, put_prop, c);
        rd_kafka_conf_set_log_cb(c, rill_kafka_log_cb);
        char cid[400];
        snprintf(cid, sizeof(cid), "%s-%s-owners", app->app_id, app->process_id);
        rd_kafka_conf_set(c, "client.id", cid, err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        if (!rk) {
                snprintf(errstr, errstr_size, "cannot create the Kafka admin client of /query: %s",
                         err);
                rd_kafka_conf_destroy(c);
                return NULL;
        }
        rill_owners_t *o = calloc(1, sizeof(*o));
        o->app = app;
        o->rk = rk;
        o->topic = app->keyed ? app->input_topic : app->repartition_topic;
        o->parts = calloc((size_t)(app->partitions > 0 ? app->partitions : 1), sizeof(*o->parts));
        pthread_mutex_init(&o->lock, NULL);
        return o;
}

void rill_owners_destroy(rill_owners_t *o) {
        if (!o)
                return;
        rd_kafka_destroy(o->rk);
        pthread_mutex_destroy(&o->lock);
        free(o->parts);
        free(o);
}

int rill_owners_get(rill_owners_t *o, int32_t p, int force, rill_owner_t *out, char *errstr,
                    size_t errstr_size) {
        if (p < 0 || p >= o->app->partitions) {
                snprintf(errstr, errstr_size, "partition %d out of range (0..%d)", (int)p,
                         o->app->partitions - 1);
                return -1;
        }
        pthread_mutex_lock(&o->lock);
        int rc = refresh(o, force, errstr, errstr_size);
        if (!rc)
                *out = o->parts[p];
        pthread_mutex_unlock(&o->lock);
        return rc;
}

int rill_owners_peers(rill_owners_t *o, rill_owner_t *out, int max, char *errstr,
                      size_t errstr_size) {
        pthread_mutex_lock(&o->lock);
        int n = refresh(o, 0, errstr, errstr_size);
        if (!n) {
                n = o->npeers < max ? o->npeers : max;
                memcpy(out, o->peers, (size_t)n * sizeof(*out));
        }
        pthread_mutex_unlock(&o->lock);
        return n;
}

/* The repartition partition that holds key, or -1 when it cannot be derived
 * (then every owned store is scanned). Unkeyed input is repartitioned by this
 * engine's own producer with librdkafka's default partitioner,
 * consistent_random: crc32(key) % partitions for a non-empty key, with the
 * repartition topic checked at startup to have app->partitions partitions.
 * Keyed input was partitioned by whoever produced it, and a kafka.partitioner
 * property changes the rule: both are scanned in full. */
int32_t rill_owners_key_partition(const rill_app_t *app, const char *key, size_t key_len) {
        if (app->keyed || !key_len || app->partitions <= 0 ||
            rill_conf_get(app->conf, "kafka.partitioner"))
                return -1;
        /* with a non-empty key the function reads neither the topic nor opaques */
        return rd_kafka_msg_partitioner_consistent_random(NULL, key, key_len, app->partitions,
                                                          NULL, NULL);
}
