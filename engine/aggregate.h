/*
 * aggregate.h -- the engine's side of aggregators (engine/aggregate.c): the
 * checks made when an application starts, the figures as JSON, and the
 * store codec that carries an aggregator's state (state/codec.h).
 * The public side (rill_aggregator_t, the built-in figures) is in rill.h.
 */
#ifndef RILL_AGGREGATE_H
#define RILL_AGGREGATE_H

#include "codec.h"
#include "rill.h"

#define RILL_VALUE_NAME_MAX 64 /* a figure's name: letters, digits, '_' */

/** Check an application's aggregator (functions, sizes, figure names).
 *  @returns 0 or -1 (errstr). @locality application thread. */
int rill_aggregator_check(const rill_aggregator_t *agg, char *errstr, size_t errstr_size);
/** The figures of a state as JSON object members, each after a comma:
 *  ,"name":value,... (names are plain, doubles that are not finite are
 *  null), into buf, to follow other members.
 *  @returns the length written (members that do not fit are left out). */
size_t rill_aggregate_json(const rill_aggregator_t *agg, const void *state, char *buf,
                           size_t size);
/** The store codec of an aggregator's state (agg kept by reference). */
void rill_aggregator_codec(const rill_aggregator_t *agg, rill_state_codec_t *codec);

#endif
