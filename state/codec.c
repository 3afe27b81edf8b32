/*
 * codec.c -- see codec.h. Aggregates are encoded with msgpack-c's packer
 * into a caller buffer (no allocation) and decoded with msgpack_unpack into a small zone.
 */
#include "codec.h"

#include <msgpack.h>
#include <string.h>

void rill_be64_put(unsigned char *p, int64_t v) {
        uint64_t u = (uint64_t)v;
        for (int i = 7; i >= 0; i--, u >>= 8)
                p[i] = (unsigned char)(u & 0xff);
}

int64_t rill_be64_get(const unsigned char *p) {
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
                u = (u << 8) | p[i];
        return (int64_t)u;
}

size_t rill_wkey_encode(int64_t wstart, const char *key, size_t key_len, unsigned char *out) {
        rill_be64_put(out, (int64_t)((uint64_t)wstart ^ 0x8000000000000000ULL));
        memcpy(out + RILL_WKEY_HDR, key, key_len);
        return RILL_WKEY_HDR + key_len;
}

int rill_wkey_decode(const void *buf, size_t len, int64_t *wstart, const char **key,
                     size_t *key_len) {
        if (len <= RILL_WKEY_HDR)
                return -1;
        const unsigned char *p = buf;
        *wstart = (int64_t)((uint64_t)rill_be64_get(p) ^ 0x8000000000000000ULL);
        *key = (const char *)p + RILL_WKEY_HDR;
        *key_len = len - RILL_WKEY_HDR;
        return 0;
}

/* A msgpack write callback appending into a fixed buffer. */
typedef struct fixbuf {
        unsigned char *p;
        size_t len, size;
        int overflow;
} fixbuf_t;

static int fixbuf_write(void *data, const char *buf, size_t len) {
        fixbuf_t *fb = data;
        if (fb->len + len > fb->size) {
                fb->overflow = 1;
                return -1;
        }
        memcpy(fb->p + fb->len, buf, len);
        fb->len += len;
        return 0;
}

size_t rill_ints_encode(const int64_t *v, size_t n, unsigned char *out, size_t size) {
        fixbuf_t fb = {out, 0, size, 0};
        msgpack_packer pk;
        msgpack_packer_init(&pk, &fb, fixbuf_write);
        msgpack_pack_array(&pk, n);
        for (size_t i = 0; i < n; i++)
                msgpack_pack_int64(&pk, v[i]);
        return fb.overflow ? 0 : fb.len;
}

size_t rill_agg_encode(const rill_agg_t *agg, unsigned char *out, size_t size) {
        int64_t v[4] = {agg->sum, agg->count, agg->first_ts, agg->last_ts};
        return rill_ints_encode(v, 4, out, size);
}

static int obj_int(const msgpack_object *o, int64_t *v) {
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                if (o->via.u64 > INT64_MAX)
                        return -1;
                *v = (int64_t)o->via.u64;
        } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
                *v = o->via.i64;
        } else {
                return -1;
        }
        return 0;
}

int rill_ints_decode(const void *buf, size_t len, int64_t *v, size_t n) {
        msgpack_zone zone;
        msgpack_object obj;
        size_t off = 0;
        if (!msgpack_zone_init(&zone, 256))
                return -1;
        int rc = -1;
        if (msgpack_unpack(buf, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS &&
            off == len && obj.type == MSGPACK_OBJECT_ARRAY && obj.via.array.size == n) {
                rc = 0;
                for (size_t i = 0; i < n && !rc; i++)
                        rc = obj_int(&obj.via.array.ptr[i], &v[i]);
        }
        msgpack_zone_destroy(&zone);
        return rc;
}

int rill_agg_decode(const void *buf, size_t len, rill_agg_t *agg) {
        int64_t v[4];
        if (rill_ints_decode(buf, len, v, 4) || v[1] < 0)
                return -1;
        *agg = (rill_agg_t){v[0], v[1], v[2], v[3]};
        return 0;
}

static size_t agg_codec_encode(void *opaque, const void *state, unsigned char *buf, size_t size) {
        (void)opaque;
        return rill_agg_encode(state, buf, size);
}

static int agg_codec_decode(void *opaque, const void *buf, size_t len, void *state) {
        (void)opaque;
        return rill_agg_decode(buf, len, state);
}

const rill_state_codec_t rill_agg_codec = {sizeof(rill_agg_t), agg_codec_encode,
                                           agg_codec_decode, NULL};
