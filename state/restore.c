/*
 * restore.c -- see restore.h.
 *
 * Why the EOF offset and not "saw offset end-1": the last offset of a
 * transactional changelog is usually a commit marker, never delivered as a
 * record; librdkafka's partition EOF event carries the fetch position, which
 * does step over markers and aborted batches.
 *
 * Why the end is the high watermark read by a second, read_uncommitted
 * client: on the read_committed restore consumer the "high" offset of
 * rd_kafka_query_watermark_offsets is the last stable offset. A transaction
 * the previous owner committed whose markers are not written yet (or one
 * still open) lies beyond the LSO; stopping there loses its changelog
 * records while the input resumes after the offsets it committed. So the
 * restore reads until its read_committed position reaches the high
 * watermark: an open transaction is waited for (it commits, or it is aborted,
 * at the latest by the coordinator after transaction.timeout.ms), bounded by
 * the restore timeout.
 */
#include "restore.h"
#include "clock.h"
#include "fault.h"
#include "kafka_admin.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESTORE_BATCH 1000

typedef struct rill_restore_job {
        int active;
        rill_wstore_t *ws;
        char topic[256];
        int32_t partition;
        int64_t start, next, high, timeout_ms, t0, last_log, pending;
        rd_kafka_queue_t *q;
        rill_restore_stats_t stats;
} rill_restore_job_t;

struct rill_restorer {
        rill_restore_job_t job; /* the one restore in progress */
        rd_kafka_t *rk;
        rd_kafka_t *hwm; /* read_uncommitted: its watermark query is the real end */
        int64_t batch_records;
        atomic_llong *done, *total;
        rd_kafka_topic_t *warm[2]; /* rill_restorer_warm's handles, on rk and hwm */
        int begin_unreachable;     /* the last begin found the changelog's leader out of reach */
};

static void end_job(rill_restorer_t *r);

void rill_restorer_progress(rill_restorer_t *r, atomic_llong *done, atomic_llong *total) {
        r->done = done;
        r->total = total;
}

rill_restorer_t *rill_restorer_new(rd_kafka_conf_t *conf, int64_t batch_records, char *errstr,
                                   size_t errstr_size) {
        char err[512];
        rd_kafka_conf_t *hconf = rd_kafka_conf_dup(conf);
        if (rd_kafka_conf_set(hconf, "isolation.level", "read_uncommitted", err, sizeof(err)) ||
            rd_kafka_conf_set(hconf, "group.id", "rill-restore-unused", err, sizeof(err))) {
                snprintf(errstr, errstr_size, "watermark client config: %s", err);
                rd_kafka_conf_destroy(hconf);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rd_kafka_t *hwm = rd_kafka_new(RD_KAFKA_CONSUMER, hconf, err, sizeof(err));
        if (!hwm) {
                snprintf(errstr, errstr_size, "cannot create watermark client: %s", err);
                rd_kafka_conf_destroy(hconf);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        if (rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) ||
            rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err)) ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
            /* librdkafka wants a group.id for consumer_poll even when only
             * assign() is used; nothing joins or commits to it */
            rd_kafka_conf_set(conf, "group.id", "rill-restore-unused", err, sizeof(err)) ||
            rd_kafka_conf_set(conf, "fetch.max.bytes", "52428800", err, sizeof(err)) ||
            /* the end is usually a marker: the EOF that proves it should not
             * wait out a long-poll fetch (default 500 ms per task) */
            rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, sizeof(err))) {
                snprintf(errstr, errstr_size, "restore consumer config: %s", err);
                rd_kafka_conf_destroy(conf);
                rd_kafka_destroy(hwm);
                return NULL;
        }
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk) {
                snprintf(errstr, errstr_size, "cannot create restore consumer: %s", err);
                rd_kafka_conf_destroy(conf);
                rd_kafka_destroy(hwm);
                return NULL;
        }
        rd_kafka_poll_set_consumer(rk);
        rill_restorer_t *r = calloc(1, sizeof(*r));
        r->rk = rk;
        r->hwm = hwm;
        r->batch_records = batch_records;
        return r;
}

void rill_restorer_destroy(rill_restorer_t *r) {
        if (!r)
                return;
        if (r->job.active)
                end_job(r);
        for (int i = 0; i < 2; i++)
                if (r->warm[i])
                        rd_kafka_topic_destroy(r->warm[i]);
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
        rd_kafka_destroy(r->hwm);
        free(r);
}

int rill_restorer_warm(rill_restorer_t *r, const char *topic, int timeout_ms, char *errstr,
                       size_t errstr_size) {
        rd_kafka_t *clients[2] = {r->rk, r->hwm};
        int rc = 0;
        errstr[0] = '\0';
        for (int i = 0; i < 2; i++) { /* both, whatever the first one did */
                if (!r->warm[i])
                        r->warm[i] = rd_kafka_topic_new(clients[i], topic, NULL);
                rd_kafka_resp_err_t e = r->warm[i] ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_last_error();
                const struct rd_kafka_metadata *md = NULL;
                if (!e)
                        e = rd_kafka_metadata(clients[i], 0, r->warm[i], &md, timeout_ms);
                if (md)
                        rd_kafka_metadata_destroy(md);
                if (e && !rc) {
                        snprintf(errstr, errstr_size, "%s: cannot read its metadata: %s", topic,
                                 rd_kafka_err2str(e));
                        rc = -1;
                }
        }
        return rc;
}

/* One ListOffsets of topic/partition at ts (-2 the log start, -1 its end),
 * bounded by timeout_ms (rill_kafka_list_offsets). */
static int list_offset(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t ts,
                       int timeout_ms, int64_t *out, char *errstr, size_t errstr_size) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, partition);
        rd_kafka_resp_err_t e = rill_kafka_list_offsets(rk, l, ts, timeout_ms);
        /* no usable leader: the partition's own error says why (no leader
         * now, or a topic deleted or denied) */
        if (!e || (e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION && l->elems[0].err))
                e = l->elems[0].err;
        if (!e && l->elems[0].offset < 0)
                e = RD_KAFKA_RESP_ERR__NO_OFFSET;
        if (e)
                snprintf(errstr, errstr_size, "%s [%d]: cannot read the %s offset: %s", topic,
                         partition, ts == -2 ? "start" : "end", rd_kafka_err2str(e));
        else
                *out = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        return !e ? 0 : rill_kafka_err_unreachable(e) ? -2 : -1;
}

int rill_restorer_end_offsets(rill_restorer_t *r, const char *topic, int32_t partition,
                              int timeout_ms, int64_t *low, int64_t *high, char *errstr,
                              size_t errstr_size) {
        int64_t t0 = rill_now_mono_ms();
        int rc = 0;
        if (low)
                rc = list_offset(r->hwm, topic, partition, -2, timeout_ms, low, errstr,
                                 errstr_size);
        int64_t left = timeout_ms - (rill_now_mono_ms() - t0);
        if (!rc && high)
                rc = list_offset(r->hwm, topic, partition, -1, left < 1 ? 1 : (int)left, high,
                                 errstr, errstr_size);
        return rc;
}

/* ---- one restore in slices --------------------------------------------------------- */

int rill_restore_begin(rill_restorer_t *r, rill_wstore_t *ws, const char *topic,
                       int32_t partition, int64_t timeout_ms, char *errstr, size_t errstr_size) {
        rill_restore_job_t *j = &r->job;
        if (j->active)
                rill_restore_abandon(r);
        memset(j, 0, sizeof(*j));
        errstr[0] = '\0';
        int64_t low = 0, high = 0;
        j->t0 = j->last_log = rill_now_mono_ms();
        char qerr[256];
        /* after a begin that found the leader out of reach, 1 s at most
         * until one succeeds: tasks waiting for it leave the thread time */
        int qrc = rill_restorer_end_offsets(
            r, topic, partition,
            r->begin_unreachable ? RESTORE_BEGIN_RETRY_TIMEOUT_MS : RESTORE_BEGIN_TIMEOUT_MS, &low,
            &high, qerr, sizeof(qerr));
        r->begin_unreachable = qrc == -2;
        if (qrc) {
                snprintf(errstr, errstr_size, "restore %s", qerr);
                return qrc;
        }
        int64_t start = rill_wstore_changelog_offset(ws);
        if (start > high || (start >= 0 && start < low))
                return 1; /* the store does not belong to this changelog */
        if (start < 0)
                start = low;
        j->stats.start_offset = start;
        j->stats.end_offset = high;
        if (r->total)
                atomic_store(r->total, high - start);
        if (start >= high) {
                if (rill_wstore_changelog_offset(ws) < 0 &&
                    rill_wstore_restore_flush(ws, start, errstr, errstr_size))
                        return -1;
                return 2;
        }
        rill_log(RILL_LOG_INFO, "restore_start",
                 "topic=%s partition=%d from=%lld to=%lld records_max=%lld", topic, partition,
                 (long long)start, (long long)high, (long long)(high - start));
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = start;
        rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (e) {
                snprintf(errstr, errstr_size, "restore %s [%d]: assign failed: %s", topic,
                         partition, rd_kafka_err2str(e));
                return -1;
        }
        j->active = 1;
        j->ws = ws;
        snprintf(j->topic, sizeof(j->topic), "%s", topic);
        j->partition = partition;
        j->start = j->next = start;
        j->high = high;
        j->timeout_ms = timeout_ms;
        j->q = rd_kafka_queue_get_consumer(r->rk);
        return 0;
}

static void end_job(rill_restorer_t *r) {
        rill_restore_job_t *j = &r->job;
        if (j->q)
                rd_kafka_queue_destroy(j->q);
        j->q = NULL;
        rd_kafka_assign(r->rk, NULL);
        j->stats.elapsed_ms = rill_now_mono_ms() - j->t0;
        j->active = 0;
}

void rill_restore_abandon(rill_restorer_t *r) {
        if (!r->job.active)
                return;
        rill_log(RILL_LOG_INFO, "restore_abandoned", "topic=%s partition=%d records=%lld",
                 r->job.topic, r->job.partition, (long long)r->job.stats.records);
        end_job(r);
}

/* librdkafka 2.0.2 stops fetching a partition whose queue holds
 * queued.min.messages (or queued.max.messages.kbytes), and its broker thread
 * then sleeps until an op or the next second: nothing wakes it when the
 * queue drains (fetch.queue.backoff.ms came in 2.2.0). Seen: one restore in
 * two runs of 12 partitions took 1,023 ms where the others took 40-70. With
 * the queue empty, a ListOffsets request to the partition's leader is such
 * an op: its broker thread wakes, decides again and fetches. A pause or a
 * resume would wake it too, but bumps the partition's op version, which
 * purges what is queued. The answer is not used: the call waits at most
 * RILL_KAFKA_NUDGE_TIMEOUT_MS per empty poll, even while the leader is
 * down. */
static void nudge_fetcher(rill_restorer_t *r) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, r->job.topic, r->job.partition);
        (void)rill_kafka_list_offsets(r->rk, l, -1, RILL_KAFKA_NUDGE_TIMEOUT_MS);
        rd_kafka_topic_partition_list_destroy(l);
}

int rill_restore_step(rill_restorer_t *r, int64_t slice_ms, rill_restore_stats_t *stats,
                      char *errstr, size_t errstr_size) {
        rill_restore_job_t *j = &r->job;
        errstr[0] = '\0';
        if (!j->active) {
                snprintf(errstr, errstr_size, "no restore in progress");
                return -1;
        }
        const char *topic = j->topic;
        int32_t partition = j->partition;
        int64_t slice_end = rill_now_mono_ms() + slice_ms;
        int rc = 2; /* 2 more to do, 0 done, -1 failed */
        /* Batches of messages: this consumer is in no group, so no rebalance
         * callback can interleave (the reason the stream threads poll one
         * message at a time does not apply here). */
        rd_kafka_message_t *msgs[RESTORE_BATCH];
        while (rc == 2 && rill_now_mono_ms() < slice_end) {
                if (rill_now_mono_ms() - j->t0 >= j->timeout_ms) {
                        snprintf(errstr, errstr_size,
                                 "restore %s [%d] did not reach end offset %lld within %lld ms "
                                 "(position %lld: a transaction of the previous owner is still "
                                 "open; it ends by commit or by the coordinator's abort after "
                                 "transaction.timeout.ms, hint: raise restore.timeout.ms if this "
                                 "repeats)",
                                 topic, partition, (long long)j->high, (long long)j->timeout_ms,
                                 (long long)j->next);
                        rc = -1;
                        break;
                }
                /* what is queued now (a batch call with a timeout waits for a
                 * full batch), else wait for one message, within the slice */
                ssize_t n = rd_kafka_consume_batch_queue(j->q, 0, msgs, RESTORE_BATCH);
                if (n <= 0) {
                        nudge_fetcher(r);
                        int64_t left = slice_end - rill_now_mono_ms();
                        int wait = left < 1 ? 1 : left > 200 ? 200 : (int)left;
                        n = (msgs[0] = rd_kafka_consumer_poll(r->rk, wait)) != NULL;
                }
                int stop = 0;
                for (ssize_t i = 0; i < n; i++) {
                        rd_kafka_message_t *m = msgs[i];
                        if (stop || rc != 2) {
                                /* past the end or after an error: drop the rest */
                        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                if (m->partition == partition && m->offset > j->next)
                                        j->next = m->offset;
                                if (j->next >= j->high)
                                        rc = 0;
                        } else if (m->err) {
                                snprintf(errstr, errstr_size, "restore %s [%d]: %s", topic,
                                         partition, rd_kafka_message_errstr(m));
                                if (rd_kafka_fatal_error(r->rk, NULL, 0))
                                        stop = 1;
                                /* else transient: librdkafka retries the fetch */
                        } else if (m->partition != partition) {
                                /* a leftover of an earlier restore's partition */
                        } else if (rill_wstore_restore_add(j->ws, m->key, m->key_len, m->payload,
                                                           m->len)) {
                                snprintf(errstr, errstr_size,
                                         "restore %s [%d]: record at offset %lld is not a "
                                         "changelog record of this application (key %zu bytes, "
                                         "value %zu bytes; hint: did the aggregator's figures "
                                         "change? a new aggregation needs a new application.id)",
                                         topic, partition, (long long)m->offset, m->key_len,
                                         m->len);
                                stop = 1;
                        } else {
                                j->next = m->offset + 1;
                                j->stats.records++;
                                if (j->next >= j->high) /* the last record is the end: no marker after it */
                                        rc = 0;
                                else if (++j->pending >= r->batch_records) {
                                        if (rill_wstore_restore_flush(j->ws, j->next, errstr,
                                                                      errstr_size))
                                                stop = 1;
                                        j->pending = 0;
                                        rill_fault("mid_restore");
                                }
                        }
                        rd_kafka_message_destroy(m);
                }
                if (stop) {
                        rc = -1;
                        break;
                }
                if (rc == 2)
                        errstr[0] = '\0'; /* a transient fetch error, retried */
        }
        if (r->done)
                atomic_store(r->done, j->next - j->start);
        if (rc == 2 && rill_now_mono_ms() - j->last_log >= 5000) {
                j->last_log = rill_now_mono_ms();
                double done = (double)(j->next - j->start) / (double)(j->high - j->start);
                double rate = (double)j->stats.records * 1000.0 / (double)(j->last_log - j->t0 + 1);
                rill_log(RILL_LOG_INFO, "restore_progress",
                         "topic=%s partition=%d records=%lld percent=%.1f eta_s=%.0f", topic,
                         partition, (long long)j->stats.records, done * 100.0,
                         rate > 0 ? (double)(j->high - j->next) / rate : -1.0);
        }
        if (rc == 0 && rill_wstore_restore_flush(j->ws, j->next, errstr, errstr_size))
                rc = -1;
        if (rc != 2) {
                end_job(r);
                if (rc == 0)
                        rill_log(RILL_LOG_INFO, "restore_done",
                                 "topic=%s partition=%d records=%lld elapsed_ms=%lld", topic,
                                 partition, (long long)j->stats.records,
                                 (long long)j->stats.elapsed_ms);
        }
        if (stats)
                *stats = j->stats;
        return rc;
}

int rill_restore(rill_restorer_t *r, rill_wstore_t *ws, const char *topic, int32_t partition,
                 int64_t timeout_ms, rill_restore_stats_t *stats, char *errstr,
                 size_t errstr_size) {
        memset(stats, 0, sizeof(*stats));
        int rc = rill_restore_begin(r, ws, topic, partition, timeout_ms, errstr, errstr_size);
        if (rc == 2) {
                *stats = r->job.stats;
                return 0;
        }
        while (rc == 0) /* each step is bounded; the whole by timeout_ms */
                if ((rc = rill_restore_step(r, 1000, stats, errstr, errstr_size)) == 2)
                        rc = 0;
                else
                        return rc;
        return rc;
}
