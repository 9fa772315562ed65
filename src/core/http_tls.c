/* SPDX-License-Identifier: Apache-2.0 */
/* TLS for the HTTP server over OpenSSL memory BIOs: ciphertext read from the socket is fed to
 * the SSL object and plaintext comes out into the connection's own read buffer, where the
 * parser takes it as it takes plain bytes; plaintext to send is encrypted into a buffer that is
 * written like any other. Nothing here blocks or touches the socket. */
#include <openssl/err.h>

#include "http-server-int.h"

struct SovTlsContext {
    SSL_CTX *ctx;
};

int sov_tls_server_new(const char *cert_file, const char *key_file, SovTlsContext **ret,
                       SovBuf *err)
{
    SovTlsContext *t = calloc(1, sizeof(*t));
    char msg[256];

    if (!t)
        return -ENOMEM;
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
        sov_buf_printf(err, "cannot load certificate %s: ", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        sov_buf_printf(err, "cannot load key %s: ", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(t->ctx) != 1) {
        sov_buf_printf(err, "key %s does not match certificate %s: ", key_file, cert_file);
        goto fail;
    }
    *ret = t;
    return 0;
fail:
    ERR_error_string_n(ERR_get_error(), msg, sizeof(msg));
    sov_buf_puts(err, msg);
    ERR_clear_error();
    sov_tls_free(t);
    return -EINVAL;
}

SovTlsContext *sov_tls_free(SovTlsContext *t)
{
    if (t) {
        SSL_CTX_free(t->ctx);
        free(t);
    }
    return NULL;
}

struct ssl_ctx_st *sov_tls_ssl_ctx(SovTlsContext *t)
{
    return t->ctx;
}

int http_tls_conn_init(HttpConn *c, SovTlsContext *t)
{
    BIO *rbio, *wbio;

    c->ssl = SSL_new(t->ctx);
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -ENOMEM;
    }
    /* An empty memory BIO reports "retry" rather than EOF. */
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(c->ssl, rbio, wbio);
    SSL_set_accept_state(c->ssl);
    return 0;
}

int http_tls_feed(HttpConn *c, const char *p, size_t n)
{
    if (n > INT32_MAX || BIO_write(SSL_get_rbio(c->ssl), p, (int)n) != (int)n)
        return -ENOMEM;
    return 0;
}

int http_tls_pull(HttpConn *c)
{
    int total = 0;

    if (!c->own) {
        c->own = malloc(READ_BUF_SIZE);
        if (!c->own)
            return -ENOMEM;
        c->rpos = c->rlen = 0;
    }
    if (c->rpos > 0) {
        memmove(c->own, c->own + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    c->rbuf = c->own;
    while (c->rlen < READ_BUF_SIZE) {
        int n = SSL_read(c->ssl, c->own + c->rlen, (int)(READ_BUF_SIZE - c->rlen));
        if (n > 0) {
            c->rlen += (size_t)n;
            total += n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN)
            return total > 0 ? total : -ECONNRESET; /* close_notify from the client */
        return -EPROTO;
    }
    return total;
}

int http_tls_take_output(HttpConn *c, char **ret, size_t *ret_len)
{
    BIO *wbio = SSL_get_wbio(c->ssl);
    size_t pending = BIO_ctrl_pending(wbio);
    char *buf;

    *ret = NULL;
    *ret_len = 0;
    if (pending == 0)
        return 0;
    buf = malloc(pending);
    if (!buf)
        return -ENOMEM;
    if (BIO_read(wbio, buf, (int)pending) != (int)pending) {
        free(buf);
        return -EIO;
    }
    *ret = buf;
    *ret_len = pending;
    return 0;
}

void http_tls_close_notify(HttpConn *c)
{
    if (SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl);
    ERR_clear_error();
}
