/*
 * aggregate.c -- aggregators: the built-in figures (sum, count, min, max,
 * average, first and last event time), the figures of a result, and the
 * store codec that carries any aggregator's state.
 *
 * The engine never looks inside a window's state: it asks the application's
 * aggregator for a new state (init), adds events to it (add), stores and
 * restores its bytes (encode, decode) and reads its figures by index (value)
 * for queries, the Postgres row and the dead-letter fallback. The built-in
 * aggregator is one such aggregator, made from a list of named figures: its
 * state is an array of 64-bit slots (an average takes two, a sum and a
 * count), encoded as one msgpack array of integers, so that the sales
 * aggregator's figures (sum, count, first and last event time) keep the
 * store and changelog bytes of the fixed aggregate that came before.
 *
 * @locality aggregators are made on the application thread; their functions
 * then run on any stream thread and on the HTTP thread, and only read.
 */
#include "aggregate.h"
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(RILL_STATE_BYTES_MAX == RILL_STATE_MAX, "rill.h and codec.h state sizes");
_Static_assert(RILL_STATE_ENCODED_MAX == RILL_ENCODED_MAX, "rill.h and codec.h encoded sizes");
_Static_assert(RILL_AGG_FIELDS_MAX <= RILL_QUERY_FIGURES_MAX, "every figure fits a /query window");

/* ---- the built-in figures ----------------------------------------------------- */

typedef struct fields {
        rill_aggregator_t agg; /* first: what rill_aggregator_fields_new returns */
        int n, nslots;
        rill_agg_op_t op[RILL_AGG_FIELDS_MAX];
        int slot[RILL_AGG_FIELDS_MAX]; /* the figure's first slot */
        int count_slot[RILL_AGG_FIELDS_MAX * 2]; /* 1: a slot that counts (never < 0) */
        rill_value_def_t defs[RILL_AGG_FIELDS_MAX];
} fields_t;

static void fields_init(void *opaque, void *state) {
        const fields_t *f = opaque;
        int64_t *s = state;
        for (int i = 0; i < f->n; i++) {
                int64_t *v = s + f->slot[i];
                switch (f->op[i]) {
                case RILL_AGG_MIN:
                case RILL_AGG_MIN_TIME:
                        v[0] = INT64_MAX;
                        break;
                case RILL_AGG_MAX:
                case RILL_AGG_MAX_TIME:
                        v[0] = INT64_MIN;
                        break;
                case RILL_AGG_AVG:
                        v[0] = v[1] = 0;
                        break;
                default:
                        v[0] = 0;
                }
        }
}

static int sum_overflow(const rill_event_t *ev, rill_reject_t *rej) {
        snprintf(rej->reason, sizeof(rej->reason), "sum_overflow");
        snprintf(rej->detail, sizeof(rej->detail),
                 "adding %lld to the window sum would overflow 64 bits", (long long)ev->value);
        return -1;
}

/* Into a copy first: an event that overflows one figure changes none. */
static int fields_add(void *opaque, void *state, const rill_event_t *ev, rill_reject_t *rej) {
        const fields_t *f = opaque;
        int64_t s[RILL_AGG_FIELDS_MAX * 2];
        memcpy(s, state, (size_t)f->nslots * sizeof(int64_t));
        for (int i = 0; i < f->n; i++) {
                int64_t *v = s + f->slot[i];
                switch (f->op[i]) {
                case RILL_AGG_SUM:
                        if (__builtin_add_overflow(v[0], ev->value, &v[0]))
                                return sum_overflow(ev, rej);
                        break;
                case RILL_AGG_COUNT:
                        v[0]++;
                        break;
                case RILL_AGG_MIN:
                        if (ev->value < v[0])
                                v[0] = ev->value;
                        break;
                case RILL_AGG_MAX:
                        if (ev->value > v[0])
                                v[0] = ev->value;
                        break;
                case RILL_AGG_AVG:
                        if (__builtin_add_overflow(v[0], ev->value, &v[0]))
                                return sum_overflow(ev, rej);
                        v[1]++;
                        break;
                case RILL_AGG_MIN_TIME:
                        if (ev->ts_ms < v[0])
                                v[0] = ev->ts_ms;
                        break;
                case RILL_AGG_MAX_TIME:
                        if (ev->ts_ms > v[0])
                                v[0] = ev->ts_ms;
                        break;
                }
        }
        memcpy(state, s, (size_t)f->nslots * sizeof(int64_t));
        return 0;
}

static size_t fields_encode(void *opaque, const void *state, unsigned char *buf, size_t size) {
        const fields_t *f = opaque;
        return rill_ints_encode(state, (size_t)f->nslots, buf, size);
}

static int fields_decode(void *opaque, const void *buf, size_t len, void *state) {
        const fields_t *f = opaque;
        int64_t *s = state;
        if (rill_ints_decode(buf, len, s, (size_t)f->nslots))
                return -1;
        for (int i = 0; i < f->nslots; i++)
                if (f->count_slot[i] && s[i] < 0)
                        return -1;
        return 0;
}

static rill_value_t fields_value(void *opaque, const void *state, int i) {
        const fields_t *f = opaque;
        const int64_t *v = (const int64_t *)state + f->slot[i];
        rill_value_t r = {0, 0.0};
        if (f->op[i] == RILL_AGG_AVG)
                r.d = v[1] ? (double)v[0] / (double)v[1] : 0.0;
        else
                r.i = v[0];
        return r;
}

rill_aggregator_t *rill_aggregator_fields_new(const rill_agg_field_t *fields, int n,
                                              char *errstr, size_t errstr_size) {
        if (n < 1 || n > RILL_AGG_FIELDS_MAX) {
                snprintf(errstr, errstr_size, "an aggregator has 1 to %d figures, not %d",
                         RILL_AGG_FIELDS_MAX, n);
                return NULL;
        }
        fields_t *f = calloc(1, sizeof(*f));
        if (!f) {
                snprintf(errstr, errstr_size, "out of memory for an aggregator");
                return NULL;
        }
        for (int i = 0; i < n; i++) {
                if ((unsigned)fields[i].op > RILL_AGG_MAX_TIME) {
                        snprintf(errstr, errstr_size, "figure %d has an unknown op %d", i,
                                 (int)fields[i].op);
                        free(f);
                        return NULL;
                }
                f->op[i] = fields[i].op;
                f->slot[i] = f->nslots;
                f->count_slot[f->nslots] = fields[i].op == RILL_AGG_COUNT;
                f->nslots += fields[i].op == RILL_AGG_AVG ? 2 : 1;
                if (fields[i].op == RILL_AGG_AVG)
                        f->count_slot[f->nslots - 1] = 1;
                f->defs[i] = (rill_value_def_t){fields[i].name, fields[i].op == RILL_AGG_AVG};
        }
        f->n = n;
        f->agg = (rill_aggregator_t){(size_t)f->nslots * sizeof(int64_t),
                                     fields_init,
                                     fields_add,
                                     fields_encode,
                                     fields_decode,
                                     f->defs,
                                     n,
                                     fields_value,
                                     f};
        if (rill_aggregator_check(&f->agg, errstr, errstr_size)) {
                free(f);
                return NULL;
        }
        return &f->agg;
}

void rill_aggregator_destroy(rill_aggregator_t *agg) {
        if (agg && agg->init == fields_init)
                free(agg->opaque); /* the fields_t the aggregator is the head of */
}

/* ---- any aggregator --------------------------------------------------------------- */

/* A figure's name is a JSON member of /query answers and the dead-letter
 * fallback: short and plain, so that it never needs escaping. */
static int plain_name(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (!n || n > RILL_VALUE_NAME_MAX)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return 0;
        return 1;
}

int rill_aggregator_check(const rill_aggregator_t *agg, char *errstr, size_t errstr_size) {
        if (!agg || !agg->init || !agg->add || !agg->encode || !agg->decode || !agg->value ||
            !agg->values) {
                snprintf(errstr, errstr_size,
                         "the topology's aggregator is missing or lacks a function (init, add, "
                         "encode, decode and value are all required)");
                return -1;
        }
        if (!agg->state_size || agg->state_size > RILL_STATE_BYTES_MAX) {
                snprintf(errstr, errstr_size, "the aggregator's state is %zu bytes; it must be 1 "
                         "to %d", agg->state_size, RILL_STATE_BYTES_MAX);
                return -1;
        }
        if (agg->n_values < 1 || agg->n_values > RILL_AGG_FIELDS_MAX) {
                snprintf(errstr, errstr_size, "the aggregator has %d figures; it must have 1 to %d",
                         agg->n_values, RILL_AGG_FIELDS_MAX);
                return -1;
        }
        for (int i = 0; i < agg->n_values; i++) {
                if (!plain_name(agg->values[i].name)) {
                        snprintf(errstr, errstr_size,
                                 "figure %d of the aggregator has the name \"%.64s\": a name is 1 "
                                 "to %d letters, digits or '_'",
                                 i, agg->values[i].name ? agg->values[i].name : "",
                                 RILL_VALUE_NAME_MAX);
                        return -1;
                }
                for (int j = 0; j < i; j++)
                        if (!strcmp(agg->values[i].name, agg->values[j].name)) {
                                snprintf(errstr, errstr_size,
                                         "the aggregator names two figures \"%s\"",
                                         agg->values[i].name);
                                return -1;
                        }
        }
        return 0;
}

int rill_aggregator_value_index(const rill_aggregator_t *agg, const char *name) {
        for (int i = 0; agg && name && i < agg->n_values; i++)
                if (!strcmp(agg->values[i].name, name))
                        return i;
        return -1;
}

rill_value_t rill_result_value(const rill_result_t *res, int i) {
        const rill_aggregator_t *a = res->aggregator;
        if (i < 0 || i >= a->n_values)
                return (rill_value_t){0, 0.0};
        return a->value(a->opaque, res->state, i);
}

size_t rill_aggregate_json(const rill_aggregator_t *agg, const void *state, char *buf,
                           size_t size) {
        size_t n = 0;
        if (!size)
                return 0;
        buf[0] = '\0';
        for (int i = 0; i < agg->n_values; i++) {
                rill_value_t v = agg->value(agg->opaque, state, i);
                char num[40];
                if (!agg->values[i].is_double)
                        snprintf(num, sizeof(num), "%lld", (long long)v.i);
                else if (isfinite(v.d))
                        snprintf(num, sizeof(num), "%.17g", v.d);
                else
                        snprintf(num, sizeof(num), "null");
                int m = snprintf(buf + n, size - n, ",\"%s\":%s", agg->values[i].name, num);
                if (m < 0 || (size_t)m >= size - n) {
                        buf[n] = '\0';
                        break;
                }
                n += (size_t)m;
        }
        return n;
}

/* ---- the store's codec, from an aggregator ------------------------------------- */

static size_t codec_encode(void *opaque, const void *state, unsigned char *buf, size_t size) {
        const rill_aggregator_t *a = opaque;
        return a->encode(a->opaque, state, buf, size);
}

static int codec_decode(void *opaque, const void *buf, size_t len, void *state) {
        const rill_aggregator_t *a = opaque;
        return a->decode(a->opaque, buf, len, state);
}

void rill_aggregator_codec(const rill_aggregator_t *agg, rill_state_codec_t *codec) {
        *codec = (rill_state_codec_t){agg->state_size, codec_encode, codec_decode, (void *)agg};
}
