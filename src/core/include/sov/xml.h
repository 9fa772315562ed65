/* SPDX-License-Identifier: Apache-2.0 */
/* XML for the S3 API: a writer that escapes every text and attribute value, and a bounded
 * parser (expat) that turns a request document into a small tree. The parser refuses DTDs
 * (no entity expansion at all), and bounds bytes, depth and element count. Element names are
 * stored without their namespace. */
#ifndef SOV_XML_H
#define SOV_XML_H

#include <stddef.h>
#include <stdint.h>

#include "sov/buf.h"

#define SOV_XML_MAX_DEPTH 32

typedef struct SovXmlWriter {
    SovBuf *out;
    int depth;
    const char *stack[SOV_XML_MAX_DEPTH];
} SovXmlWriter;

/* Starts a document with the XML declaration. */
void sov_xml_writer_init(SovXmlWriter *w, SovBuf *out);
/* Opens <name> (with xmlns="ns" when ns is not NULL); name must outlive the writer. */
int sov_xml_open(SovXmlWriter *w, const char *name, const char *ns);
int sov_xml_close(SovXmlWriter *w);
/* <name>escaped text</name> */
int sov_xml_elem(SovXmlWriter *w, const char *name, SovStr text);
int sov_xml_elem_u64(SovXmlWriter *w, const char *name, uint64_t v);
/* Escapes &, <, >, ", ' and control characters (as numeric references) into out. */
int sov_xml_escape(SovBuf *out, SovStr s);

typedef struct SovXmlNode SovXmlNode;
struct SovXmlNode {
    char *name; /* local name */
    char *text; /* character data directly inside, NUL-terminated; "" when none (never NULL) */
    size_t text_len;
    SovXmlNode *parent;
    SovXmlNode *child; /* first child element */
    SovXmlNode *last;  /* last child element */
    SovXmlNode *next;  /* next sibling */
};

typedef struct SovXmlLimits {
    size_t max_bytes;
    unsigned max_depth;
    unsigned max_nodes;
} SovXmlLimits;

int sov_xml_parse(SovStr doc, const SovXmlLimits *lim, SovXmlNode **ret_root, SovBuf *err);
/* First child element with this local name, or NULL. */
SovXmlNode *sov_xml_child(const SovXmlNode *n, const char *name);
SovXmlNode *sov_xml_free(SovXmlNode *root);

#endif
