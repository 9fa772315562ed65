/* SPDX-License-Identifier: Apache-2.0 */
/* XML writer and bounded expat-based tree parser. */
#include <expat.h>
#include <stdlib.h>
#include <string.h>

#include "sov/xml.h"

void sov_xml_writer_init(SovXmlWriter *w, SovBuf *out)
{
    *w = (SovXmlWriter){.out = out};
    sov_buf_puts(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
}

int sov_xml_escape(SovBuf *out, SovStr s)
{
    int r = 0;
    for (size_t i = 0; i < s.len && r >= 0; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        switch (c) {
        case '&':
            r = sov_buf_puts(out, "&amp;");
            break;
        case '<':
            r = sov_buf_puts(out, "&lt;");
            break;
        case '>':
            r = sov_buf_puts(out, "&gt;");
            break;
        case '"':
            r = sov_buf_puts(out, "&quot;");
            break;
        case '\'':
            r = sov_buf_puts(out, "&apos;");
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                r = sov_buf_printf(out, "&#x%X;", c);
            else
                r = sov_buf_putc(out, (char)c);
        }
    }
    return r;
}

int sov_xml_open(SovXmlWriter *w, const char *name, const char *ns)
{
    if (w->depth >= SOV_XML_MAX_DEPTH)
        return -E2BIG;
    w->stack[w->depth++] = name;
    if (ns)
        return sov_buf_printf(w->out, "<%s xmlns=\"%s\">", name, ns);
    return sov_buf_printf(w->out, "<%s>", name);
}

int sov_xml_close(SovXmlWriter *w)
{
    if (w->depth == 0)
        return -EINVAL;
    return sov_buf_printf(w->out, "</%s>", w->stack[--w->depth]);
}

int sov_xml_elem(SovXmlWriter *w, const char *name, SovStr text)
{
    int r = sov_buf_printf(w->out, "<%s>", name);
    if (r >= 0)
        r = sov_xml_escape(w->out, text);
    if (r >= 0)
        r = sov_buf_printf(w->out, "</%s>", name);
    return r;
}

int sov_xml_elem_u64(SovXmlWriter *w, const char *name, uint64_t v)
{
    return sov_buf_printf(w->out, "<%s>%llu</%s>", name, (unsigned long long)v, name);
}

typedef struct ParseCtx {
    XML_Parser p;
    const SovXmlLimits *lim;
    SovXmlNode *root, *cur;
    unsigned depth, nodes;
    size_t text_total;
    SovBuf *err;
    int r;
} ParseCtx;

static void parse_fail(ParseCtx *c, int r, const char *msg)
{
    if (c->r == 0) {
        c->r = r;
        sov_buf_puts(c->err, msg);
    }
    XML_StopParser(c->p, XML_FALSE);
}

static void on_start(void *data, const XML_Char *name, const XML_Char **attrs)
{
    ParseCtx *c = data;
    const char *local = strrchr(name, ' ');
    SovXmlNode *n;

    if (++c->depth > c->lim->max_depth)
        return parse_fail(c, -E2BIG, "XML nested too deeply");
    if (++c->nodes > c->lim->max_nodes)
        return parse_fail(c, -E2BIG, "XML has too many elements");
    n = calloc(1, sizeof(*n));
    /* text is never NULL: an empty element has "" (callers compare it without checking) */
    if (!n || !(n->name = strdup(local ? local + 1 : name)) || !(n->text = calloc(1, 1))) {
        if (n)
            free(n->name);
        free(n);
        return parse_fail(c, -ENOMEM, "out of memory");
    }
    n->parent = c->cur;
    if (!c->cur) {
        c->root = n;
    } else {
        if (c->cur->last)
            c->cur->last->next = n;
        else
            c->cur->child = n;
        c->cur->last = n;
    }
    c->cur = n;
}

static void on_end(void *data, const XML_Char *name)
{
    ParseCtx *c = data;
    c->depth--;
    if (c->cur)
        c->cur = c->cur->parent;
}

static void on_text(void *data, const XML_Char *s, int len)
{
    ParseCtx *c = data;
    SovXmlNode *n = c->cur;
    char *t;

    if (!n || len <= 0)
        return;
    c->text_total += (size_t)len;
    if (c->text_total > c->lim->max_bytes)
        return parse_fail(c, -E2BIG, "XML text too large");
    t = realloc(n->text, n->text_len + (size_t)len + 1);
    if (!t)
        return parse_fail(c, -ENOMEM, "out of memory");
    memcpy(t + n->text_len, s, (size_t)len);
    n->text_len += (size_t)len;
    t[n->text_len] = '\0';
    n->text = t;
}

static void on_doctype(void *data, const XML_Char *name, const XML_Char *sysid,
                       const XML_Char *pubid, int has_internal)
{
    parse_fail(data, -EINVAL, "XML document type declarations are not allowed");
}

static void on_entity(void *data, const XML_Char *name, int is_param, const XML_Char *value,
                      int value_len, const XML_Char *base, const XML_Char *sysid,
                      const XML_Char *pubid, const XML_Char *notation)
{
    parse_fail(data, -EINVAL, "XML entity declarations are not allowed");
}

int sov_xml_parse(SovStr doc, const SovXmlLimits *lim, SovXmlNode **ret_root, SovBuf *err)
{
    ParseCtx c = {.lim = lim, .err = err};
    enum XML_Status st;

    if (doc.len > lim->max_bytes || doc.len > INT32_MAX) {
        sov_buf_puts(err, "XML document too large");
        return -E2BIG;
    }
    c.p = XML_ParserCreateNS("UTF-8", ' ');
    if (!c.p)
        return -ENOMEM;
    XML_SetUserData(c.p, &c);
    XML_SetElementHandler(c.p, on_start, on_end);
    XML_SetCharacterDataHandler(c.p, on_text);
    XML_SetStartDoctypeDeclHandler(c.p, on_doctype);
    XML_SetEntityDeclHandler(c.p, on_entity);
    st = XML_Parse(c.p, doc.ptr ? doc.ptr : "", (int)doc.len, XML_TRUE);
    if (st != XML_STATUS_OK && c.r == 0) {
        c.r = -EINVAL;
        sov_buf_printf(err, "malformed XML at line %lu: %s",
                       (unsigned long)XML_GetCurrentLineNumber(c.p),
                       XML_ErrorString(XML_GetErrorCode(c.p)));
    }
    XML_ParserFree(c.p);
    if (c.r == 0 && !c.root) {
        c.r = -EINVAL;
        sov_buf_puts(err, "empty XML document");
    }
    if (c.r < 0) {
        sov_xml_free(c.root);
        return c.r;
    }
    *ret_root = c.root;
    return 0;
}

SovXmlNode *sov_xml_child(const SovXmlNode *n, const char *name)
{
    for (SovXmlNode *ch = n ? n->child : NULL; ch; ch = ch->next)
        if (strcmp(ch->name, name) == 0)
            return ch;
    return NULL;
}

SovXmlNode *sov_xml_free(SovXmlNode *n)
{
    while (n) {
        SovXmlNode *next = n->next;
        sov_xml_free(n->child);
        free(n->name);
        free(n->text);
        free(n);
        n = next;
    }
    return NULL;
}
