/* SPDX-License-Identifier: Apache-2.0 */
/* sov-compute's host resources (src/compute/host.c, included for its statics) on fake trees in
 * a temporary directory: PCI addresses, GPU discovery and the inventory, claims (vfio-bound
 * GPUs first, kept across calls, other servers' claims, -EPERM, -EBUSY, -ENODEV, release), and
 * the cgroup layouts (v2, v1, off) with the limit files a guest's cgroup gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/compute/host.c"

typedef struct Fix {
    char dir[64];
    Compute c;
    Server s[3];
} Fix;

#define PATH_N 1400

static void put(const char *dir, const char *name, const char *text)
{
    char path[PATH_N];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void get(const char *dir, const char *name, char *buf, size_t n)
{
    char path[PATH_N];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(read_text(path, buf, n), 0);
}

/* Makes dir/name (name may be "" for dir itself). */
static void mkdir_in(const char *dir, const char *name)
{
    char path[PATH_N];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static bool exists_in(const char *dir, const char *name)
{
    char path[PATH_N];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* A device directory like sysfs's, its driver a link to drivers/<driver>. */
static void pci_dev(Fix *f, const char *addr, const char *vendor, const char *klass,
                    const char *driver)
{
    char dir[700], link[720], target[300];
    snprintf(dir, sizeof(dir), "%s/pci/%s", f->dir, addr);
    assert_int_equal(mkdir(dir, 0755), 0);
    put(dir, "vendor", vendor);
    put(dir, "device", "0x1eb8\n");
    put(dir, "class", klass);
    if (driver) {
        snprintf(target, sizeof(target), "%s/drivers", f->dir);
        mkdir_in(target, driver);
        snprintf(link, sizeof(link), "%s/driver", dir);
        snprintf(target, sizeof(target), "../../drivers/%s", driver);
        assert_int_equal(symlink(target, link), 0);
    }
}

static int setup(void **state)
{
    Fix *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sov-computehost-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    mkdir_in(f->dir, "pci");
    mkdir_in(f->dir, "drivers");
    mkdir_in(f->dir, "state");
    mkdir_in(f->dir, "state/servers");
    snprintf(f->c.cfg.pci_sysfs, sizeof(f->c.cfg.pci_sysfs), "%s/pci", f->dir);
    snprintf(f->c.cfg.state_dir, sizeof(f->c.cfg.state_dir), "%s/state", f->dir);
    snprintf(f->c.cfg.cgroups, sizeof(f->c.cfg.cgroups), "auto");
    snprintf(f->c.cfg.cgroup_root, sizeof(f->c.cfg.cgroup_root), "%s/cg", f->dir);
    snprintf(f->c.host, sizeof(f->c.host), "h1");
    snprintf(f->c.accel, sizeof(f->c.accel), "tcg");
    for (int i = 0; i < 3; i++) {
        Server *s = &f->s[i];
        s->c = &f->c;
        char id[16], dir[128];
        snprintf(id, sizeof(id), "srv-%d", i);
        snprintf(dir, sizeof(dir), "%s/state/servers/%s", f->dir, id);
        memcpy(s->id, id, sizeof(id));
        memcpy(s->dir, dir, sizeof(dir));
        assert_int_equal(mkdir(s->dir, 0700), 0);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fix *f = *state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    memset(&cg, 0, sizeof(cg));
    free(f);
    return 0;
}

/* Claims want GPUs for server i: the return value, and the -device values joined by ' '. */
static int claim(Fix *f, int i, int64_t want, char *out, size_t n, char *err, size_t errn)
{
    SovBuf devs = SOV_BUF_INIT;
    err[0] = out[0] = '\0';
    int r = host_gpu_claim(&f->s[i], want, &devs, err, errn);
    size_t k = 0;
    for (size_t off = 0; off < devs.len; off += strlen(devs.ptr + off) + 1)
        k += (size_t)snprintf(out + k, n - k, "%s%s", k ? " " : "", devs.ptr + off);
    sov_buf_release(&devs);
    return r;
}

static void test_pci_addr(void **state)
{
    (void)state;
    assert_true(pci_addr_ok("0000:af:00.0"));
    assert_true(pci_addr_ok("10000:00:1f.7"));
    assert_false(pci_addr_ok("0000:AF:00.0"));
    assert_false(pci_addr_ok("0000:af:00.8"));
    assert_false(pci_addr_ok("0000:af:00"));
    assert_false(pci_addr_ok("../../etc/x"));
    assert_false(pci_addr_ok(""));
    assert_false(pci_addr_ok("0000:af:00.0,x=1"));
    assert_true(id_ok("3f2a-01"));
    assert_false(id_ok(".."));
    assert_false(id_ok("a/b"));
}

static void test_inventory(void **state)
{
    Fix *f = *state;
    pci_dev(f, "0000:b1:00.0", "0x10de\n", "0x030200\n", "vfio-pci");
    pci_dev(f, "0000:af:00.0", "0x10de\n", "0x030000\n", "nouveau");
    pci_dev(f, "0000:c0:00.0", "0x1002\n", "0x038000\n", NULL);      /* AMD, unbound */
    pci_dev(f, "0000:c0:00.1", "0x1002\n", "0x040300\n", "snd_hda"); /* audio */
    pci_dev(f, "0000:00:02.0", "0x8086\n", "0x030000\n", "i915");    /* Intel display */
    pci_dev(f, "0000:00:03.0", "bogus\n", "0x030000\n", NULL);       /* unreadable id */
    mkdir_in(f->dir, "pci/not-an-address");
    json_t *inv = host_gpu_inventory(&f->c);
    char *text = json_dumps(inv, JSON_COMPACT);
    assert_string_equal(
        text, "[{\"address\":\"0000:af:00.0\",\"vendor\":\"10de\",\"device\":\"1eb8\",\"driver\":"
              "\"nouveau\",\"iommu_group\":null,\"vfio\":false},"
              "{\"address\":\"0000:b1:00.0\",\"vendor\":\"10de\",\"device\":\"1eb8\",\"driver\":"
              "\"vfio-pci\",\"iommu_group\":null,\"vfio\":true},"
              "{\"address\":\"0000:c0:00.0\",\"vendor\":\"1002\",\"device\":\"1eb8\",\"driver\":"
              "null,\"iommu_group\":null,\"vfio\":false}]");
    free(text);
    json_decref(inv);
    /* a missing tree is an empty inventory */
    snprintf(f->c.cfg.pci_sysfs, sizeof(f->c.cfg.pci_sysfs), "%s/nowhere", f->dir);
    inv = host_gpu_inventory(&f->c);
    assert_int_equal(json_array_size(inv), 0);
    json_decref(inv);
}

static void test_inventory_bounded(void **state)
{
    Fix *f = *state;
    char addr[32];
    for (int i = 0; i < HOST_GPU_MAX + 6; i++) {
        snprintf(addr, sizeof(addr), "0000:%02x:00.0", i);
        pci_dev(f, addr, "0x10de\n", "0x030000\n", "vfio-pci");
    }
    HostGpus *g = calloc(1, sizeof(*g));
    assert_int_equal(gpus_scan(&f->c, g), 0);
    assert_int_equal(g->n, HOST_GPU_MAX);
    assert_true(g->truncated);
    for (size_t i = 1; i < g->n; i++)
        assert_true(strcmp(g->v[i - 1].address, g->v[i].address) < 0);
    free(g);
}

static void test_claims(void **state)
{
    Fix *f = *state;
    char out[256], err[400], text[256];
    pci_dev(f, "0000:af:00.0", "0x10de\n", "0x030000\n", "nouveau");
    pci_dev(f, "0000:b1:00.0", "0x10de\n", "0x030000\n", "vfio-pci");
    pci_dev(f, "0000:c2:00.0", "0x10de\n", "0x030000\n", "vfio-pci");

    /* the first vfio-bound GPU by address, recorded in the server's directory */
    assert_int_equal(claim(f, 0, 1, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "vfio-pci,host=0000:b1:00.0");
    get(f->s[0].dir, "gpus", text, sizeof(text));
    assert_string_equal(text, "0000:b1:00.0");
    /* asked again (a restart, a new start), the server keeps its GPU */
    assert_int_equal(claim(f, 0, 1, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "vfio-pci,host=0000:b1:00.0");

    /* two more for another server: the free vfio one, then the one the host driver holds */
    assert_int_equal(claim(f, 1, 2, out, sizeof(out), err, sizeof(err)), -EPERM);
    assert_string_equal(err, "GPU 0000:af:00.0 (10de:1eb8) is bound to nouveau, not vfio-pci; "
                             "bind it to vfio-pci for passthrough");
    assert_false(exists_in(f->s[1].dir, "gpus"));
    /* more than are free */
    assert_int_equal(claim(f, 1, 3, out, sizeof(out), err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "2 of the 3 GPU(s) of host h1 are free"));
    assert_int_equal(claim(f, 1, 1, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "vfio-pci,host=0000:c2:00.0");
    assert_int_equal(claim(f, 2, 1, out, sizeof(out), err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "0000:af:00.0"));

    /* a recorded claim of another size is made afresh; junk lines in others' files are
     * ignored */
    put(f->s[2].dir, "gpus", "junk\n../../x\n0000:af:00.0,x=y\n");
    assert_int_equal(claim(f, 0, 2, out, sizeof(out), err, sizeof(err)), -EPERM);
    /* the server that asked for nothing gives its GPU back */
    assert_int_equal(claim(f, 0, 0, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "");
    assert_int_equal(claim(f, 2, 1, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "vfio-pci,host=0000:b1:00.0");
    /* release frees it for the next one */
    host_release(&f->s[2]);
    assert_false(exists_in(f->s[2].dir, "gpus"));
    assert_int_equal(claim(f, 0, 1, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "vfio-pci,host=0000:b1:00.0");

    /* a recorded address the host no longer has: claimed afresh */
    put(f->s[1].dir, "gpus", "0000:ee:00.0\n");
    assert_int_equal(claim(f, 1, 1, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "vfio-pci,host=0000:c2:00.0");
    assert_int_equal(claim(f, 1, HOST_GPU_MAX + 1, out, sizeof(out), err, sizeof(err)), -EINVAL);
}

static void test_claim_without_gpus(void **state)
{
    Fix *f = *state;
    char out[256], err[400];
    pci_dev(f, "0000:00:02.0", "0x8086\n", "0x030000\n", "i915");
    assert_int_equal(claim(f, 0, 1, out, sizeof(out), err, sizeof(err)), -ENODEV);
    assert_non_null(strstr(err, "host h1 has no GPU to pass through"));
    assert_int_equal(claim(f, 0, 0, out, sizeof(out), err, sizeof(err)), 0);
}

static void cg_tree(Fix *f, const char *const *dirs, const char *const *files)
{
    char cgdir[700];
    snprintf(cgdir, sizeof(cgdir), "%s/cg", f->dir);
    for (size_t i = 0; dirs[i]; i++)
        mkdir_in(cgdir, dirs[i]);
    for (size_t i = 0; files[i]; i += 2)
        put(cgdir, files[i], files[i + 1]);
}

static void test_cgroup_v2(void **state)
{
    Fix *f = *state;
    char text[256], dir[700];
    static const char *const dirs[] = {"", "sov", "sov/srv-0", NULL};
    static const char *const files[] = {"cgroup.controllers",
                                        "cpuset cpu io memory pids\n",
                                        "cgroup.subtree_control",
                                        "",
                                        "sov/cgroup.subtree_control",
                                        "",
                                        "sov/srv-0/cpu.max",
                                        "max 100000\n",
                                        "sov/srv-0/memory.max",
                                        "max\n",
                                        "sov/srv-0/cgroup.procs",
                                        "",
                                        NULL};
    cg_tree(f, dirs, files);
    host_init(&f->c);
    assert_int_equal(cg.mode, CG_V2);
    snprintf(dir, sizeof(dir), "%s/cg", f->dir);
    get(dir, "cgroup.subtree_control", text, sizeof(text));
    assert_string_equal(text, "+cpu +memory");
    get(dir, "sov/cgroup.subtree_control", text, sizeof(text));
    assert_string_equal(text, "+cpu +memory");
    host_cgroup_enter(&f->s[0], 4242, 4, 2048);
    get(dir, "sov/srv-0/cpu.max", text, sizeof(text));
    assert_string_equal(text, "400000 100000");
    get(dir, "sov/srv-0/memory.max", text, sizeof(text));
    assert_int_equal(strtoull(text, NULL, 10), (2048ULL + 256 + 1024) << 20);
    get(dir, "sov/srv-0/cgroup.procs", text, sizeof(text));
    assert_string_equal(text, "4242");
    /* under KVM there is no translated-code cache to make room for */
    snprintf(f->c.accel, sizeof(f->c.accel), "kvm");
    put(dir, "sov/srv-0/memory.max", ""); /* a plain file, unlike cgroupfs, keeps a longer tail */
    host_cgroup_enter(&f->s[0], 4242, 1, 512);
    get(dir, "sov/srv-0/memory.max", text, sizeof(text));
    assert_int_equal(strtoull(text, NULL, 10), (512ULL + 256) << 20);
    /* a server whose cgroup cannot be made up is logged, not failed; release is quiet */
    host_cgroup_enter(&f->s[1], 4243, 1, 512);
    host_release(&f->s[1]);
    assert_false(exists_in(dir, "sov/srv-1"));
}

static void test_cgroup_v1_and_sweep(void **state)
{
    Fix *f = *state;
    char text[256], dir[700];
    static const char *const dirs[] = {"",
                                       "cpu",
                                       "memory",
                                       "cpu/sov",
                                       "memory/sov",
                                       "cpu/sov/srv-0",
                                       "memory/sov/srv-0",
                                       "cpu/sov/gone",
                                       "memory/sov/gone",
                                       NULL};
    static const char *const files[] = {"cpu/cpu.cfs_quota_us",
                                        "-1\n",
                                        "memory/memory.limit_in_bytes",
                                        "9223372036854771712\n",
                                        "cpu/sov/srv-0/cpu.cfs_period_us",
                                        "100000\n",
                                        "cpu/sov/srv-0/cpu.cfs_quota_us",
                                        "-1\n",
                                        "cpu/sov/srv-0/cgroup.procs",
                                        "",
                                        "memory/sov/srv-0/memory.limit_in_bytes",
                                        "0\n",
                                        "memory/sov/srv-0/cgroup.procs",
                                        "",
                                        NULL};
    cg_tree(f, dirs, files);
    host_init(&f->c);
    assert_int_equal(cg.mode, CG_V1);
    /* the empty cgroups of servers this host lacks are gone, its own stay */
    snprintf(dir, sizeof(dir), "%s/cg", f->dir);
    assert_false(exists_in(dir, "cpu/sov/gone"));
    assert_false(exists_in(dir, "memory/sov/gone"));
    assert_true(exists_in(dir, "cpu/sov/srv-0"));
    host_cgroup_enter(&f->s[0], 77, 2, 1024);
    get(dir, "cpu/sov/srv-0/cpu.cfs_quota_us", text, sizeof(text));
    assert_string_equal(text, "200000");
    get(dir, "cpu/sov/srv-0/cgroup.procs", text, sizeof(text));
    assert_string_equal(text, "77");
    get(dir, "memory/sov/srv-0/memory.limit_in_bytes", text, sizeof(text));
    assert_int_equal(strtoull(text, NULL, 10), (1024ULL + 256 + 1024) << 20);
    get(dir, "memory/sov/srv-0/cgroup.procs", text, sizeof(text));
    assert_string_equal(text, "77");
}

static void test_cgroup_off(void **state)
{
    Fix *f = *state;
    static const char *const dirs[] = {"", NULL};
    static const char *const files[] = {"cgroup.controllers", "cpuset io pids\n", NULL};
    cg_tree(f, dirs, files);
    host_init(&f->c);
    assert_int_equal(cg.mode, CG_OFF); /* v2 without cpu and memory */
    static const char *const v1[] = {"cpu", NULL};
    static const char *const none[] = {NULL};
    snprintf(f->c.cfg.cgroup_root, sizeof(f->c.cfg.cgroup_root), "%s/cg/cpu", f->dir);
    cg_tree(f, v1, none);
    host_init(&f->c);
    assert_int_equal(cg.mode, CG_OFF); /* nothing there */
    snprintf(f->c.cfg.cgroups, sizeof(f->c.cfg.cgroups), "off");
    host_init(&f->c);
    assert_int_equal(cg.mode, CG_OFF);
    host_cgroup_enter(&f->s[0], 77, 2, 1024); /* nothing to do */
    host_release(&f->s[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pci_addr),
        cmocka_unit_test_setup_teardown(test_inventory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inventory_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_without_gpus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_v1_and_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
