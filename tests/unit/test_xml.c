/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for sov/xml.h: the escaping writer and the bounded, DTD-refusing parser. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sov/xml.h"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                        \
    } while (0)

static const SovXmlLimits roomy = {.max_bytes = 1 << 20, .max_depth = 16, .max_nodes = 1000};

#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

static SovXmlNode *parse_ok(const char *text, const SovXmlLimits *lim)
{
    SovXmlNode *root = NULL;
    SovBuf err = SOV_BUF_INIT;

    if (sov_xml_parse(sov_str(text), lim, &root, &err) != 0)
        fail_msg("'%s' refused: %s", text, err.ptr ? err.ptr : "");
    assert_non_null(root);
    sov_buf_release(&err);
    return root;
}

/* Parses text expecting error r; err keeps the message. */
static void parse_fail(const char *text, const SovXmlLimits *lim, int r, SovBuf *err)
{
    SovXmlNode *root = (SovXmlNode *)(uintptr_t)0x1;

    sov_buf_reset(err);
    int got = sov_xml_parse(sov_str(text), lim, &root, err);
    if (got != r)
        fail_msg("'%s': got %d, want %d (%s)", text, got, r, err->ptr ? err->ptr : "");
    assert_ptr_equal(root, (SovXmlNode *)(uintptr_t)0x1);
    assert_non_null(err->ptr);
    assert_true(err->len > 0);
}

static void test_escape(void **state)
{
    SovBuf out = SOV_BUF_INIT;

    assert_int_equal(sov_xml_escape(&out, SOV_STR("a&b<c>d\"e'f")), 0);
    assert_string_equal(out.ptr, "a&amp;b&lt;c&gt;d&quot;e&apos;f");
    sov_buf_reset(&out);
    assert_int_equal(sov_xml_escape(&out, SOV_STR("\x01|\t|\n|\r|\x1f|\x7f")), 0);
    assert_string_equal(out.ptr, "&#x1;|&#x9;|&#xA;|&#xD;|&#x1F;|&#x7F;");
    sov_buf_reset(&out);
    /* An embedded NUL is escaped rather than ending the text. */
    assert_int_equal(sov_xml_escape(&out, (SovStr){"a\0b", 3}), 0);
    assert_string_equal(out.ptr, "a&#x0;b");
    sov_buf_reset(&out);
    /* UTF-8 passes through untouched. */
    assert_int_equal(sov_xml_escape(&out, SOV_STR("caf\xc3\xa9 \xe2\x82\xac")), 0);
    assert_string_equal(out.ptr, "caf\xc3\xa9 \xe2\x82\xac");
    sov_buf_reset(&out);
    assert_int_equal(sov_xml_escape(&out, SOV_STR("")), 0);
    assert_int_equal(out.len, 0);
    sov_buf_release(&out);

    SovBuf small;
    sov_buf_init(&small, 4);
    assert_int_equal(sov_xml_escape(&small, SOV_STR("<")), 0); /* "&lt;" fits exactly */
    assert_int_equal(sov_xml_escape(&small, SOV_STR("<")), -E2BIG);
    assert_string_equal(small.ptr, "&lt;");
    sov_buf_release(&small);
}

static void test_writer(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovXmlWriter w;

    sov_xml_writer_init(&w, &out);
    assert_int_equal(
        sov_xml_open(&w, "ListBucketResult", "http://s3.amazonaws.com/doc/2006-03-01/"), 0);
    assert_int_equal(sov_xml_elem(&w, "Name", SOV_STR("b&b")), 0);
    assert_int_equal(sov_xml_elem_u64(&w, "MaxKeys", 1000), 0);
    assert_int_equal(sov_xml_elem_u64(&w, "Size", UINT64_MAX), 0);
    assert_int_equal(sov_xml_open(&w, "Contents", NULL), 0);
    assert_int_equal(sov_xml_elem(&w, "Key", SOV_STR("<a> \"q\" 'x'\n")), 0);
    assert_int_equal(sov_xml_open(&w, "Owner", NULL), 0);
    assert_int_equal(sov_xml_elem(&w, "ID", SOV_STR("")), 0);
    assert_int_equal(sov_xml_close(&w), 0);
    assert_int_equal(sov_xml_close(&w), 0);
    assert_int_equal(sov_xml_close(&w), 0);
    assert_int_equal(w.depth, 0);
    /* Closing more than was opened is refused and writes nothing. */
    size_t len = out.len;
    assert_int_equal(sov_xml_close(&w), -EINVAL);
    assert_int_equal(out.len, len);

    assert_string_equal(out.ptr, XML_DECL
                        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                        "<Name>b&amp;b</Name>"
                        "<MaxKeys>1000</MaxKeys>"
                        "<Size>18446744073709551615</Size>"
                        "<Contents>"
                        "<Key>&lt;a&gt; &quot;q&quot; &apos;x&apos;&#xA;</Key>"
                        "<Owner><ID></ID></Owner>"
                        "</Contents>"
                        "</ListBucketResult>");
    sov_buf_release(&out);
}

static void test_writer_depth_limit(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovXmlWriter w;

    sov_xml_writer_init(&w, &out);
    for (int i = 0; i < SOV_XML_MAX_DEPTH; i++)
        assert_int_equal(sov_xml_open(&w, "a", NULL), 0);
    size_t len = out.len;
    assert_int_equal(sov_xml_open(&w, "b", NULL), -E2BIG);
    assert_int_equal(out.len, len);
    for (int i = 0; i < SOV_XML_MAX_DEPTH; i++)
        assert_int_equal(sov_xml_close(&w), 0);
    assert_int_equal(sov_xml_close(&w), -EINVAL);
    /* The document is balanced: the parser takes it back. */
    SovXmlLimits lim = {.max_bytes = 1 << 20, .max_depth = SOV_XML_MAX_DEPTH, .max_nodes = 100};
    sov_xml_free(parse_ok(out.ptr, &lim));
    sov_buf_release(&out);
}

static void test_writer_parser_roundtrip(void **state)
{
    SovBuf out = SOV_BUF_INIT;
    SovXmlWriter w;
    /* Characters XML 1.0 can carry, including those that need references. */
    const char text[] = "a&b <c> \"d\" 'e' tab\there\nnl\rcr caf\xc3\xa9";

    sov_xml_writer_init(&w, &out);
    sov_xml_open(&w, "Root", "urn:x");
    sov_xml_elem(&w, "Key", sov_str(text));
    sov_xml_elem_u64(&w, "N", 42);
    sov_xml_close(&w);

    SovXmlNode *root = parse_ok(out.ptr, &roomy);
    assert_string_equal(root->name, "Root");
    SovXmlNode *key = sov_xml_child(root, "Key");
    assert_non_null(key);
    assert_int_equal(key->text_len, strlen(text));
    assert_string_equal(key->text, text);
    assert_string_equal(sov_xml_child(root, "N")->text, "42");
    sov_xml_free(root);
    sov_buf_release(&out);
}

static const char s3_delete[] =
    XML_DECL "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
             "  <Quiet>true</Quiet>\n"
             "  <Object><Key>photos/a&amp;b.jpg</Key></Object>\n"
             "  <Object><Key>c</Key><VersionId>v1</VersionId></Object>\n"
             "  <Object><Key><![CDATA[x<y]]>&lt;z&#x41;&#66;</Key></Object>\n"
             "</Delete>\n";

static void test_parse_s3_document(void **state)
{
    SovXmlNode *root = parse_ok(s3_delete, &roomy), *n;
    int objects = 0;

    assert_string_equal(root->name, "Delete"); /* no namespace in the name */
    assert_null(root->parent);
    assert_null(root->next);
    n = sov_xml_child(root, "Quiet");
    assert_non_null(n);
    assert_string_equal(n->text, "true");
    assert_int_equal(n->text_len, 4);
    assert_ptr_equal(n->parent, root);
    assert_null(n->child);

    for (n = root->child; n; n = n->next)
        if (strcmp(n->name, "Object") == 0)
            objects++;
    assert_int_equal(objects, 3);

    /* sov_xml_child returns the first match. */
    n = sov_xml_child(root, "Object");
    assert_string_equal(sov_xml_child(n, "Key")->text, "photos/a&b.jpg");
    assert_null(sov_xml_child(n, "VersionId"));
    n = n->next;
    assert_string_equal(sov_xml_child(n, "Key")->text, "c");
    assert_string_equal(sov_xml_child(n, "VersionId")->text, "v1");
    /* CDATA, entity and character references concatenate into one text. */
    n = n->next;
    assert_string_equal(sov_xml_child(n, "Key")->text, "x<y<zAB");
    assert_ptr_equal(root->last, n);
    assert_null(n->next);

    assert_null(sov_xml_child(root, "Missing"));
    assert_null(sov_xml_child(NULL, "Quiet"));
    /* An element without character data has empty text, never NULL. */
    assert_string_equal(sov_xml_child(root, "Object")->text, ""); /* never NULL */
    sov_xml_free(root);
    assert_null(sov_xml_free(NULL));
}

static void test_parse_prefixed_namespace(void **state)
{
    SovXmlNode *root =
        parse_ok("<s3:Tagging xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                 "<s3:TagSet><s3:Tag><s3:Key>env</s3:Key><Value>prod</Value></s3:Tag>"
                 "</s3:TagSet></s3:Tagging>",
                 &roomy);

    assert_string_equal(root->name, "Tagging");
    SovXmlNode *tag = sov_xml_child(sov_xml_child(root, "TagSet"), "Tag");
    assert_non_null(tag);
    assert_string_equal(sov_xml_child(tag, "Key")->text, "env");
    assert_string_equal(sov_xml_child(tag, "Value")->text, "prod");
    sov_xml_free(root);

    /* Without namespaces at all. */
    root = parse_ok("<a><b>1</b></a>", &roomy);
    assert_string_equal(root->name, "a");
    assert_string_equal(sov_xml_child(root, "b")->text, "1");
    sov_xml_free(root);
}

static void test_parse_text_concatenation(void **state)
{
    /* Text on both sides of a child element belongs to the parent. */
    SovXmlNode *root = parse_ok("<a>one<b>x</b>two&amp;three</a>", &roomy);

    assert_string_equal(root->text, "onetwo&three");
    assert_int_equal(root->text_len, 12);
    assert_string_equal(sov_xml_child(root, "b")->text, "x");
    sov_xml_free(root);

    /* A long text arrives in many pieces and is joined. */
    SovBuf doc = SOV_BUF_INIT;
    sov_buf_puts(&doc, "<big>");
    for (int i = 0; i < 5000; i++)
        sov_buf_printf(&doc, "%d&amp;", i % 10);
    sov_buf_puts(&doc, "</big>");
    root = parse_ok(doc.ptr, &roomy);
    assert_int_equal(root->text_len, 10000);
    assert_int_equal(strlen(root->text), 10000);
    assert_memory_equal(root->text, "0&1&2&", 6);
    sov_xml_free(root);
    sov_buf_release(&doc);
}

static void test_limit_depth(void **state)
{
    SovXmlLimits lim = roomy;
    SovBuf err = SOV_BUF_INIT;

    lim.max_depth = 3;
    sov_xml_free(parse_ok("<a><b><c>x</c></b></a>", &lim));
    parse_fail("<a><b><c><d/></c></b></a>", &lim, -E2BIG, &err);
    assert_string_equal(err.ptr, "XML nested too deeply");
    /* Deep nesting from a hostile client. */
    SovBuf doc = SOV_BUF_INIT;
    for (int i = 0; i < 10000; i++)
        sov_buf_puts(&doc, "<a>");
    parse_fail(doc.ptr, &roomy, -E2BIG, &err);
    sov_buf_release(&doc);
    sov_buf_release(&err);
}

static void test_limit_nodes(void **state)
{
    SovXmlLimits lim = roomy;
    SovBuf err = SOV_BUF_INIT;

    lim.max_nodes = 3;
    sov_xml_free(parse_ok("<a><b/><c/></a>", &lim));
    parse_fail("<a><b/><c/><d/></a>", &lim, -E2BIG, &err);
    assert_string_equal(err.ptr, "XML has too many elements");
    sov_buf_release(&err);
}

static void test_limit_bytes(void **state)
{
    SovXmlLimits lim = roomy;
    SovBuf err = SOV_BUF_INIT;
    const char *doc = "<a>0123456789</a>"; /* 17 bytes */

    lim.max_bytes = 17;
    sov_xml_free(parse_ok(doc, &lim));
    lim.max_bytes = 16;
    parse_fail(doc, &lim, -E2BIG, &err);
    assert_string_equal(err.ptr, "XML document too large");
    sov_buf_release(&err);
}

static void test_refuse_doctype(void **state)
{
    static const char billion_laughs[] =
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE lolz [\n"
        " <!ENTITY lol \"lol\">\n"
        " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
        " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
        " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
        " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
        " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
        " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
        " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
        " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
        " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
        "]>\n"
        "<lolz>&lol9;</lolz>\n";
    SovBuf err = SOV_BUF_INIT;

    parse_fail(billion_laughs, &roomy, -EINVAL, &err);
    assert_contains(err.ptr, "not allowed");
    /* Even an empty DOCTYPE, and an external entity declaration (XXE). */
    parse_fail("<!DOCTYPE a><a/>", &roomy, -EINVAL, &err);
    assert_string_equal(err.ptr, "XML document type declarations are not allowed");
    parse_fail("<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>", &roomy,
               -EINVAL, &err);
    assert_contains(err.ptr, "not allowed");
    /* An entity that was never declared is an error, not an empty string. */
    parse_fail("<a>&x;</a>", &roomy, -EINVAL, &err);
    assert_contains(err.ptr, "malformed XML");
    sov_buf_release(&err);
}

static void test_malformed(void **state)
{
    SovBuf err = SOV_BUF_INIT;

    parse_fail("<a><b></a>", &roomy, -EINVAL, &err);
    assert_contains(err.ptr, "malformed XML at line 1: ");
    assert_contains(err.ptr, "mismatched tag");
    parse_fail("<a>\n<b>\n</c>\n</a>", &roomy, -EINVAL, &err);
    assert_contains(err.ptr, "malformed XML at line 3: ");
    parse_fail("<a>", &roomy, -EINVAL, &err);
    parse_fail("<a/><b/>", &roomy, -EINVAL, &err); /* two roots */
    parse_fail("<a>x & y</a>", &roomy, -EINVAL, &err);
    parse_fail("<p:a/>", &roomy, -EINVAL, &err);      /* unbound prefix */
    parse_fail("<a>\xff</a>", &roomy, -EINVAL, &err); /* not UTF-8 */
    parse_fail("just text", &roomy, -EINVAL, &err);
    assert_contains(err.ptr, "malformed XML at line 1");
    sov_buf_release(&err);
}

static void test_empty_document(void **state)
{
    SovBuf err = SOV_BUF_INIT;
    SovXmlNode *root = (SovXmlNode *)(uintptr_t)0x1;

    parse_fail("", &roomy, -EINVAL, &err);
    parse_fail("   \n", &roomy, -EINVAL, &err);
    parse_fail(XML_DECL, &roomy, -EINVAL, &err);
    sov_buf_reset(&err);
    assert_int_equal(sov_xml_parse(SOV_STR_NULL, &roomy, &root, &err), -EINVAL);
    assert_ptr_equal(root, (SovXmlNode *)(uintptr_t)0x1);
    assert_true(err.len > 0);
    sov_buf_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_writer),
        cmocka_unit_test(test_writer_depth_limit),
        cmocka_unit_test(test_writer_parser_roundtrip),
        cmocka_unit_test(test_parse_s3_document),
        cmocka_unit_test(test_parse_prefixed_namespace),
        cmocka_unit_test(test_parse_text_concatenation),
        cmocka_unit_test(test_limit_depth),
        cmocka_unit_test(test_limit_nodes),
        cmocka_unit_test(test_limit_bytes),
        cmocka_unit_test(test_refuse_doctype),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_empty_document),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
