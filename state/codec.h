/*
 * codec.h -- byte encodings of the window store and its changelog.
 *
 * Store key   = 8-byte big-endian window start (sign bit flipped, so bytes
 *               sort like numbers) followed by the aggregation key bytes.
 *               Time first: closing windows is one range scan from the
 *               start of the store to the close bound.
 * Store value = the window's aggregate state as its codec encodes it
 *               (msgpack; rill_state_codec_t below). The default codec's
 *               state is rill_agg_t, encoded as the array
 *               [sum, count, first_ts_ms, last_ts_ms].
 * The changelog topic uses the same key and value bytes; a window deleted on
 * close is a tombstone (null value). The task's stream time travels in the
 * changelog under the one-byte key RILL_STREAM_TIME_KEY (value 8 bytes BE,
 * then, since the close bound is kept, 8 more: the bound below which windows
 * were closed at that stream time),
 * and its sources' progress under RILL_SOURCES_KEY.
 */
#ifndef RILL_CODEC_H
#define RILL_CODEC_H
#include <stddef.h>
#include <stdint.h>

#define RILL_STREAM_TIME_KEY "\x01"
#define RILL_STREAM_TIME_KEY_LEN 1
/* The event-time progress of every source partition, as the aggregation task
 * last saw it (unkeyed input): key RILL_SOURCES_KEY, value one 8-byte BE
 * time per source partition (INT64_MIN: not reported yet). */
#define RILL_SOURCES_KEY "\x02"
#define RILL_SOURCES_KEY_LEN 1
#define RILL_WKEY_HDR 8

/* The state of one window of an aggregation: a fixed-size value in memory
 * (copied by the store, never interpreted by it), msgpack bytes in RocksDB
 * and in the changelog. The application's aggregator supplies its size and
 * the two conversions (engine/rill.h, rill_aggregator_t), so the store, the
 * changelog, restore and queries carry any aggregate without knowing its
 * shape. encode and decode may run on any thread (queries decode on the HTTP
 * thread): they must only read opaque. */
#define RILL_STATE_MAX 256 /* bytes of one window's state in memory */
#define RILL_ENCODED_MAX 512 /* bytes of one encoded state */

typedef struct rill_state_codec {
        size_t size; /* 1..RILL_STATE_MAX */
        /* @returns the length written into buf, 0 when it did not fit */
        size_t (*encode)(void *opaque, const void *state, unsigned char *buf, size_t size);
        /* @returns 0, or -1 when buf is not a valid encoded state */
        int (*decode)(void *opaque, const void *buf, size_t len, void *state);
        void *opaque;
} rill_state_codec_t;

/* The default state (the sales aggregator's, and every store opened without
 * a codec): the window's sum, count and first and last event time. */
typedef struct rill_agg {
        int64_t sum;
        int64_t count;
        int64_t first_ts; /* earliest event time in the window */
        int64_t last_ts;  /* latest event time in the window */
} rill_agg_t;

void rill_be64_put(unsigned char *p, int64_t v);
int64_t rill_be64_get(const unsigned char *p);

/** Encode (window start, key) into out (size >= 8 + key_len). @returns length. */
size_t rill_wkey_encode(int64_t wstart, const char *key, size_t key_len, unsigned char *out);
/** Decode a store key. @returns -1 if it is not a window key. */
int rill_wkey_decode(const void *buf, size_t len, int64_t *wstart, const char **key,
                     size_t *key_len);

/** Encode an aggregate into out (size >= 64). @returns length. */
size_t rill_agg_encode(const rill_agg_t *agg, unsigned char *out, size_t size);
/** @returns 0, or -1 when buf is not a valid encoded aggregate. */
int rill_agg_decode(const void *buf, size_t len, rill_agg_t *agg);
/** The codec of rill_agg_t. */
extern const rill_state_codec_t rill_agg_codec;

/** n 64-bit integers as the msgpack array of n integers, and back (exactly
 *  n, each a msgpack integer within int64). rill_agg_t is the n = 4 case.
 *  @returns the length (0: did not fit) / 0 or -1. */
size_t rill_ints_encode(const int64_t *v, size_t n, unsigned char *out, size_t size);
int rill_ints_decode(const void *buf, size_t len, int64_t *v, size_t n);

#endif
