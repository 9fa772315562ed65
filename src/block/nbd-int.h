/* SPDX-License-Identifier: Apache-2.0 */
/* What the NBD transport (nbd.c) needs from the protocol state machine (nbd_proto.c) beyond the
 * public test entry points: its own output buffer (swapped, not copied, into a socket write),
 * reading into a WRITE payload in place, and the state that decides when to read, pause and
 * close. Private to src/block. */
#ifndef SOV_BLOCK_NBD_INT_H
#define SOV_BLOCK_NBD_INT_H

#include "nbd.h"

/* Called when a completion outside nbd_proto_input() produced output or freed a slot for more
 * requests; the transport then flushes and resumes reading. Never called from within
 * nbd_proto_input() (the transport flushes after it returns anyway). */
typedef void (*NbdProtoNotify)(NbdProto *p, void *ud);
void nbd_proto_set_notify(NbdProto *p, NbdProtoNotify fn, void *ud);

/* Feeds client bytes; n may be 0 to resume input held back while NBD_MAX_IN_FLIGHT requests
 * were in flight. Returns 0, or < 0 once the connection is to close (after the requests in
 * flight have completed and their replies have gone out). Output accumulates in
 * nbd_proto_out(). */
int nbd_proto_input(NbdProto *p, const void *data, size_t n);
/* The bytes to send. The transport may swap the SovBuf with an empty one of its own. */
SovBuf *nbd_proto_out(NbdProto *p);

/* Where the next bytes may be read directly (the rest of a WRITE payload), or NULL/0. */
void nbd_proto_read_target(NbdProto *p, char **ret_ptr, size_t *ret_len);
/* Accounts for n bytes read into the area nbd_proto_read_target() returned. */
int nbd_proto_input_in_place(NbdProto *p, size_t n);

/* Whether more input can be taken now: false while the in-flight limit is reached with input
 * held back, and once the connection is closing. */
bool nbd_proto_wants_input(const NbdProto *p);
bool nbd_proto_in_transmission(const NbdProto *p);
unsigned nbd_proto_in_flight(const NbdProto *p);
/* True when the connection is to close and no request is in flight any more. */
bool nbd_proto_finished(const NbdProto *p);

/* STARTTLS: once the option is acknowledged the state machine takes no more input until the
 * transport has run the TLS handshake. nbd_proto_tls_pending() says so; the transport then
 * sends what nbd_proto_out() holds (the ACK) in plaintext, takes the bytes that followed the
 * option (already TLS records: they are never parsed as options) with nbd_proto_tls_start(),
 * and calls nbd_proto_tls_ready() when the handshake is done, from which on it feeds decrypted
 * bytes. Options negotiated before TLS (structured replies, meta contexts) are forgotten then,
 * as the protocol document asks. */
bool nbd_proto_tls_pending(const NbdProto *p);
int nbd_proto_tls_start(NbdProto *p, SovBuf *ret_early);
void nbd_proto_tls_ready(NbdProto *p);

#endif
