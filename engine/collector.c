/*
 * collector.c -- see collector.h.
 */
#include "collector.h"
#include "clock.h"
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TXN_CALL_MIN_MS 1000 /* the shortest bound given to a transaction call */

int rill_collector_init(rill_collector_t *c, int partitions, int64_t txn_timeout_ms,
                        rill_metrics_t *m) {
        memset(c, 0, sizeof(*c));
        c->partitions = partitions;
        c->txn_timeout_ms = txn_timeout_ms;
        c->m = m;
        c->changelog_next = malloc((size_t)(partitions > 0 ? partitions : 1) * sizeof(int64_t));
        if (!c->changelog_next)
                return -1;
        for (int i = 0; i < partitions; i++)
                c->changelog_next[i] = -1;
        return 0;
}

void rill_collector_free(rill_collector_t *c) {
        free(c->changelog_next);
        c->changelog_next = NULL;
}

void rill_collector_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        rill_collector_t *c = opaque;
        (void)rk;
        if (m->err) {
                if (!c->dr_failed)
                        snprintf(c->dr_err, sizeof(c->dr_err), "delivery to %s [%d] failed: %s",
                                 rd_kafka_topic_name(m->rkt), m->partition,
                                 rd_kafka_err2str(m->err));
                c->dr_failed = 1;
                return;
        }
        intptr_t part = (intptr_t)m->_private - 1; /* changelog records carry partition+1 */
        if (part >= 0 && part < c->partitions && m->offset + 1 > c->changelog_next[part])
                c->changelog_next[part] = m->offset + 1;
}

int64_t rill_collector_changelog_next(const rill_collector_t *c, int32_t partition) {
        return partition >= 0 && partition < c->partitions ? c->changelog_next[partition] : -1;
}

void rill_collector_ended(rill_collector_t *c) {
        c->txn_open = 0;
        for (int i = 0; i < c->partitions; i++)
                c->changelog_next[i] = -1;
}

int64_t rill_collector_left_ms(const rill_collector_t *c) {
        return c->txn_open ? c->txn_deadline_ms - rill_now_mono_ms() : c->txn_timeout_ms;
}

int rill_collector_wait_ms(const rill_collector_t *c) {
        int64_t left = rill_collector_left_ms(c);
        return (int)(left < TXN_CALL_MIN_MS ? TXN_CALL_MIN_MS : left);
}

int rill_collector_error(rill_collector_t *c, rd_kafka_error_t *e, const char *what,
                         char *errstr, size_t errstr_size) {
        snprintf(errstr, errstr_size, "%s: %s", what, rd_kafka_error_string(e));
        if (rd_kafka_error_is_fatal(e))
                c->txn_fatal = 1;
        rd_kafka_error_destroy(e);
        return -1;
}

/* Begin the transaction its first record opens. @returns 0 or -1 (errstr). */
static int begin(rill_collector_t *c, char *errstr, size_t errstr_size) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(c->producer);
        if (e) {
                /* begin is local: it fails only when the producer is fatal or
                 * still inside an earlier transaction that never ended, and
                 * every later begin would fail the same way: the producer is
                 * recreated */
                c->txn_fatal = 1;
                return rill_collector_error(c, e, "cannot begin transaction", errstr, errstr_size);
        }
        c->txn_open = 1;
        c->txn_deadline_ms = rill_now_mono_ms() + c->txn_timeout_ms - c->txn_timeout_ms / 5;
        for (int i = 0; i < c->partitions; i++)
                c->changelog_next[i] = -1;
        return 0;
}

int rill_collector_send(rill_collector_t *c, rill_out_t out, int32_t partition, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        rd_kafka_headers_t *hdrs, int32_t changelog_partition, char *errstr,
                        size_t errstr_size) {
        if (!c->txn_open && begin(c, errstr, errstr_size)) {
                if (hdrs)
                        rd_kafka_headers_destroy(hdrs);
                return -1;
        }
        rd_kafka_vu_t vu[7];
        size_t nvu = 0;
        vu[nvu].vtype = RD_KAFKA_VTYPE_RKT, vu[nvu++].u.rkt = c->out[out];
        vu[nvu].vtype = RD_KAFKA_VTYPE_PARTITION, vu[nvu++].u.i32 = partition;
        vu[nvu].vtype = RD_KAFKA_VTYPE_KEY, vu[nvu].u.mem.ptr = (void *)key, vu[nvu++].u.mem.size = key_len;
        vu[nvu].vtype = RD_KAFKA_VTYPE_VALUE, vu[nvu].u.mem.ptr = (void *)value, vu[nvu++].u.mem.size = value_len;
        vu[nvu].vtype = RD_KAFKA_VTYPE_MSGFLAGS, vu[nvu++].u.i = RD_KAFKA_MSG_F_COPY;
        vu[nvu].vtype = RD_KAFKA_VTYPE_OPAQUE,
        vu[nvu++].u.ptr = (void *)(intptr_t)(changelog_partition + 1); /* 0: not a changelog record */
        if (hdrs)
                vu[nvu].vtype = RD_KAFKA_VTYPE_HEADERS, vu[nvu++].u.headers = hdrs;
        for (int tries = 0;; tries++) {
                rd_kafka_error_t *perr = rd_kafka_produceva(c->producer, vu, nvu);
                rd_kafka_resp_err_t err = perr ? rd_kafka_error_code(perr) : RD_KAFKA_RESP_ERR_NO_ERROR;
                if (perr)
                        rd_kafka_error_destroy(perr);
                if (!err)
                        return 0;
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || rill_collector_left_ms(c) <= 0) {
                        if (hdrs)
                                rd_kafka_headers_destroy(hdrs);
                        snprintf(errstr, errstr_size, "cannot produce to %s: %s%s",
                                 rd_kafka_topic_name(c->out[out]), rd_kafka_err2str(err),
                                 err == RD_KAFKA_RESP_ERR__QUEUE_FULL
                                     ? " until the transaction's deadline" : "");
                        return -1;
                }
                rd_kafka_poll(c->producer, 100); /* queue full: let deliveries drain */
        }
}

int rill_collector_dead_letter(rill_collector_t *c, const rd_kafka_message_t *m,
                               const void *value, size_t value_len, const rill_reject_t *rej,
                               char *errstr, size_t errstr_size) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(6);
        char part[16], off[24];
        snprintf(part, sizeof(part), "%d", m->partition);
        snprintf(off, sizeof(off), "%lld", (long long)m->offset);
        rd_kafka_header_add(h, "rill.error.reason", -1, rej->reason, -1);
        rd_kafka_header_add(h, "rill.error.detail", -1, rej->detail, -1);
        rd_kafka_header_add(h, "rill.source.topic", -1, rd_kafka_topic_name(m->rkt), -1);
        rd_kafka_header_add(h, "rill.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "rill.source.offset", -1, off, -1);
        atomic_fetch_add(&c->m->dead_lettered, 1);
        if (!strcmp(rej->reason, "late"))
                atomic_fetch_add(&c->m->late, 1);
        rill_log(RILL_LOG_DEBUG, "dead_letter", "reason=%s topic=%s partition=%d offset=%lld",
                 rej->reason, rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset);
        return rill_collector_send(c, RILL_OUT_DLQ, RD_KAFKA_PARTITION_UA, m->key, m->key_len,
                                   value, value_len, h, -1, errstr, errstr_size);
}
