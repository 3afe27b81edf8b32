/*
 * peer.h -- how one worker process reaches another one's HTTP endpoint:
 * the endpoint each consumer advertises in its client.id, and a bounded
 * HTTP/1.0 GET to forward a query with.
 *
 * Only libc and the JSON buffer (json.h): no Kafka, no store, so the parsers
 * are unit-fuzzed (tests/fuzz/fuzz_query.c) on their own.
 *
 * The advertisement: a client.id of "<application.id>-<process>-<thread>"
 * followed by RILL_PEER_TAG and "[host]:port", e.g.
 * "sales-aggregator-3f2a...-0;http=:8081". An empty host means "the address
 * the broker sees this client connect from" (DescribeConsumerGroups returns
 * it per member): in Kubernetes and compose that is the pod's or the
 * container's address, which the other workers can reach.
 */
#ifndef RILL_PEER_H
#define RILL_PEER_H

#include "json.h"

#include <stddef.h>

#define RILL_PEER_TAG ";http="
#define RILL_PEER_HOST_MAX 256
/* request header of a forwarded query: it is answered from the local stores
 * only, never forwarded again (at most one hop) */
#define RILL_PEER_FORWARDED "X-Rill-Forwarded"
/* the largest response read back: the largest /query body plus headers */
#define RILL_PEER_RESPONSE_MAX (RILL_QUERY_BODY_MAX + 8192)

/** Write base plus the advertisement of host (may be "" or NULL: the
 *  broker's view) and port into buf. @returns 0, or -1 when it does not fit
 *  or host/port are invalid (buf then holds base alone, or ""). */
int rill_peer_advertise(char *buf, size_t size, const char *base, const char *host, int port);

/** The HTTP endpoint advertised in client_id, with broker_host (as the
 *  broker reports a member's host: "/10.1.2.3", maybe NULL) standing in
 *  for an empty host. @returns 0 and fills host (a bare name or address,
 *  IPv6 without brackets) and *port, or -1 when there is no valid
 *  advertisement. @locality any thread (pure). */
int rill_peer_endpoint(const char *client_id, const char *broker_host, char *host,
                       size_t host_size, int *port);

/** Split a complete HTTP/1.x response: the status code (100..599) and where
 *  the body starts. @returns 0, -1 when it is not a well-formed response.
 *  @locality any thread (pure). */
int rill_peer_parse_response(const char *buf, size_t len, int *status, size_t *body_off);

/** Append s percent-encoded (RFC 3986 unreserved bytes kept) to b. */
int rill_peer_urlencode(rill_jbuf_t *b, const char *s, size_t len);

/** GET http://host:port<path> with the RILL_PEER_FORWARDED header set to
 *  forwarded_by, everything (resolve aside, see peer.c) bounded by
 *  timeout_ms; the body goes to body (replacing its contents).
 *  @returns 0 with *status, or -1 (errstr: what failed, with the address).
 *  @locality any thread (blocking, on the caller's thread). */
int rill_peer_get(const char *host, int port, const char *path, const char *forwarded_by,
                  int timeout_ms, int *status, rill_jbuf_t *body, char *errstr,
                  size_t errstr_size);

#endif
