/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the XML request parser (S3 bodies such as CompleteMultipartUpload and
 * Delete): sov_xml_parse() under small limits. Besides not crashing, a parse must keep the
 * promises of sov/xml.h: on success the tree respects the depth and node limits, every text is
 * NUL-terminated at text_len, parent links are consistent; on failure err holds a reason and no
 * tree is returned. The serialised tree is then written back with the XML writer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sov/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned walk(const SovXmlNode *n, unsigned depth, unsigned max_depth, SovXmlWriter *w)
{
    unsigned count = 1;
    if (depth > max_depth || !n->name || (n->text && n->text[n->text_len] != '\0'))
        abort();
    sov_xml_open(w, n->name, NULL);
    if (n->text)
        sov_xml_escape(w->out, (SovStr){n->text, n->text_len});
    for (const SovXmlNode *c = n->child; c; c = c->next) {
        if (c->parent != n)
            abort();
        if (!c->next && c != n->last)
            abort();
        count += walk(c, depth + 1, max_depth, w);
    }
    sov_xml_close(w);
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const SovXmlLimits lim = {.max_bytes = 4096, .max_depth = 8, .max_nodes = 64};
    SovBuf err = {0}, out = {0};
    SovXmlNode *root = NULL;
    int r = sov_xml_parse((SovStr){(const char *)data, size}, &lim, &root, &err);
    if (r < 0) {
        if (root || err.len == 0)
            abort();
    } else {
        if (!root || size > lim.max_bytes)
            abort();
        SovXmlWriter w;
        sov_xml_writer_init(&w, &out);
        if (walk(root, 1, lim.max_depth, &w) > lim.max_nodes)
            abort();
        sov_xml_free(root);
    }
    sov_buf_release(&err);
    sov_buf_release(&out);
    return 0;
}
