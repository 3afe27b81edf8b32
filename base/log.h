/*
 * log.h -- structured logging (logfmt or JSON lines on stderr).
 *
 * rill_log(level, "event", "key=%s n=%d", ...) writes one line
 *   ts=2026-11-23T21:09:33.123Z level=info event=commit key=... n=...
 * or, with log.format=json, {"ts":...,"level":...,"event":...,"msg":"key=... n=..."}.
 * Each %s is a whole value, `key=%s` or `key=\"%s\"`: rill_log escapes it so
 * that the line stays one line of strict logfmt whatever the value holds
 * (quotes, backslashes, newlines, control bytes, invalid UTF-8); see log.c.
 * Thread-safe: each line is written with one fputs under stdio's lock.
 */
#ifndef RILL_LOG_H
#define RILL_LOG_H

typedef enum { RILL_LOG_DEBUG, RILL_LOG_INFO, RILL_LOG_WARN, RILL_LOG_ERROR } rill_log_level_t;

/** Configure level ("debug".."error") and format ("logfmt"|"json").
 *  @returns -1 for an unknown name. @locality application thread, before threads start. */
int rill_log_configure(const char *level, const char *format);

/** @locality any thread. */
void rill_log(rill_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** librdkafka's log callback (rd_kafka_conf_set_log_cb): its lines as
 *  `event=librdkafka` lines. @locality librdkafka's threads. */
struct rd_kafka_s;
void rill_kafka_log_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);

#endif
