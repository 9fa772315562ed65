/* SPDX-License-Identifier: Apache-2.0 */
/* The store of the volume engine: the catalog (volumes, snapshots, layers, wrapped keys) kept
 * in memory and rewritten atomically as `catalog.json` after every change, the management
 * operations (create, delete, snapshot, clone, resize, info, list), and the garbage collection
 * of layers nothing refers to. Files are created before the catalog names them and removed
 * after it stops naming them, so a crash leaves at worst orphans, which open sweeps away. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "sov/crypto.h"
#include "sov/daemon.h"
#include "vol-int.h"

#define CATALOG         "catalog.json"
#define CATALOG_VERSION 1
#define WRAP_AAD        "sovcloud volume key v1"
#define WRAPPED_LEN     (SOV_GCM_IV_LEN + SOV_GCM_TAG_LEN + SOV_XTS_KEY_LEN)
#define MAX_CATALOG     (64u << 20)

static int fail(SovBuf *err, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(SovBuf *err, int r, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        sov_buf_reset(err);
        va_start(ap, fmt);
        (void)sov_buf_vprintf(err, fmt, ap);
        va_end(ap);
    }
    return r;
}

static bool name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n > 0 && n <= VOL_NAME_MAX && s[0] != '.' && sov_name_ok(s);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

VolEntry *vol_store_find(VolStore *st, const char *name)
{
    for (size_t i = 0; i < st->nents; i++)
        if (strcmp(st->ents[i]->name, name) == 0)
            return st->ents[i];
    return NULL;
}

static VolLayer *layer_find(VolStore *st, uint64_t id)
{
    for (size_t i = 0; i < st->nlayers; i++)
        if (st->layers[i]->id == id)
            return st->layers[i];
    return NULL;
}

static void entry_free(VolEntry *e)
{
    if (!e)
        return;
    free(e->wrapped);
    free(e);
}

static int push_entry(VolStore *st, VolEntry *e)
{
    VolEntry **n = realloc(st->ents, (st->nents + 1) * sizeof(*n));

    if (!n)
        return -ENOMEM;
    st->ents = n;
    st->ents[st->nents++] = e;
    return 0;
}

static void drop_entry(VolStore *st, VolEntry *e)
{
    for (size_t i = 0; i < st->nents; i++)
        if (st->ents[i] == e) {
            memmove(st->ents + i, st->ents + i + 1, (st->nents - i - 1) * sizeof(*st->ents));
            st->nents--;
            return;
        }
}

static VolLayer *layer_new(VolStore *st, uint64_t id, VolLayer *parent, uint64_t size)
{
    VolLayer *l = calloc(1, sizeof(*l)), **n;

    if (!l)
        return NULL;
    n = realloc(st->layers, (st->nlayers + 1) * sizeof(*n));
    if (!n) {
        free(l);
        return NULL;
    }
    st->layers = n;
    l->id = id;
    l->parent = parent;
    l->parent_id = parent ? parent->id : 0;
    l->size = size;
    l->data_fd = l->map_fd = -1;
    st->layers[st->nlayers++] = l;
    return l;
}

static void drop_layer(VolStore *st, VolLayer *l)
{
    for (size_t i = 0; i < st->nlayers; i++)
        if (st->layers[i] == l) {
            memmove(st->layers + i, st->layers + i + 1,
                    (st->nlayers - i - 1) * sizeof(*st->layers));
            st->nlayers--;
            break;
        }
    free(l);
}

/* Writes the catalog: atomically and durably, or (fsync=false, for tests) just atomically. */
int vol_catalog_save(VolStore *st)
{
    json_t *root = json_object(), *vols = json_array(), *snaps = json_array(),
           *layers = json_array();
    char path[4096], tmp[4200];
    char *text = NULL;
    int r = -ENOMEM;

    if (!root || !vols || !snaps || !layers)
        goto out;
    for (size_t i = 0; i < st->nents; i++) {
        VolEntry *e = st->ents[i];
        json_t *o = json_pack("{s:s, s:I, s:I, s:b, s:s, s:s, s:I}", "name", e->name, "size",
                              (json_int_t)e->size, "layer", (json_int_t)e->layer->id, "encrypted",
                              e->encrypted, "key", e->wrapped ? e->wrapped : "", "origin",
                              e->origin, "created", (json_int_t)e->created_ms);
        if (!o || json_array_append_new(e->is_snapshot ? snaps : vols, o) < 0)
            goto out;
    }
    for (size_t i = 0; i < st->nlayers; i++) {
        VolLayer *l = st->layers[i];
        json_t *o = json_pack("{s:I, s:I, s:I}", "id", (json_int_t)l->id, "parent",
                              (json_int_t)l->parent_id, "size", (json_int_t)l->size);
        if (!o || json_array_append_new(layers, o) < 0)
            goto out;
    }
    if (json_object_set_new(root, "version", json_integer(CATALOG_VERSION)) < 0 ||
        json_object_set_new(root, "next_layer", json_integer((json_int_t)st->next_layer)) < 0 ||
        json_object_set(root, "volumes", vols) < 0 ||
        json_object_set(root, "snapshots", snaps) < 0 ||
        json_object_set(root, "layers", layers) < 0)
        goto out;
    text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text)
        goto out;
    if (snprintf(path, sizeof(path), "%s/" CATALOG, st->dir) >= (int)sizeof(path)) {
        r = -ENAMETOOLONG;
        goto out;
    }
    if (st->fsync) {
        r = sov_write_file_atomic(path, text, strlen(text));
    } else {
        int fd;
        size_t len = strlen(text);

        (void)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            r = -errno;
            goto out;
        }
        r = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
        close(fd);
        if (r == 0 && rename(tmp, path) < 0)
            r = -errno;
        if (r < 0)
            unlink(tmp);
    }
out:
    free(text);
    json_decref(vols);
    json_decref(snaps);
    json_decref(layers);
    json_decref(root);
    return r;
}

static int get_u64(json_t *o, const char *key, uint64_t *ret)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -EIO;
    *ret = (uint64_t)json_integer_value(v);
    return 0;
}

static int load_entry(VolStore *st, json_t *o, bool snapshot)
{
    const char *name, *key, *origin;
    json_t *enc = json_object_get(o, "encrypted");
    uint64_t size, lid, created;
    VolEntry *e;

    name = json_string_value(json_object_get(o, "name"));
    key = json_string_value(json_object_get(o, "key"));
    origin = json_string_value(json_object_get(o, "origin"));
    if (!name || !name_valid(name) || !key || !origin || strlen(origin) > VOL_NAME_MAX ||
        !json_is_boolean(enc) || get_u64(o, "size", &size) < 0 || get_u64(o, "layer", &lid) < 0 ||
        get_u64(o, "created", &created) < 0 || vol_store_find(st, name) || size == 0 ||
        size > VOL_MAX_SIZE || size % VOL_SECTOR)
        return -EIO;
    if (json_is_true(enc) && strlen(key) != 2 * WRAPPED_LEN)
        return -EIO;
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    memcpy(e->name, name, strlen(name) + 1);
    memcpy(e->origin, origin, strlen(origin) + 1);
    e->size = size;
    e->is_snapshot = snapshot;
    e->encrypted = json_is_true(enc);
    e->created_ms = (int64_t)created;
    e->layer = layer_find(st, lid);
    if (e->encrypted && !(e->wrapped = strdup(key))) {
        free(e);
        return -ENOMEM;
    }
    if (!e->layer || e->layer->size < size || push_entry(st, e) < 0) {
        entry_free(e);
        return -EIO;
    }
    return 0;
}

static int catalog_load(VolStore *st, SovBuf *err)
{
    char path[4096];
    json_error_t jerr;
    json_t *root, *arr, *it;
    size_t i;
    int r = -EIO;

    if (snprintf(path, sizeof(path), "%s/" CATALOG, st->dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    if (access(path, F_OK) < 0) {
        if (errno != ENOENT)
            return -errno;
        st->next_layer = 1;
        return vol_catalog_save(st);
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(err, -EIO, "catalog of %s is not valid JSON", st->dir);
    if (get_u64(root, "next_layer", &st->next_layer) < 0 ||
        json_integer_value(json_object_get(root, "version")) != CATALOG_VERSION)
        goto out;
    arr = json_object_get(root, "layers");
    if (!json_is_array(arr))
        goto out;
    json_array_foreach(arr, i, it)
    {
        uint64_t id, parent, size;
        VolLayer *p = NULL;

        if (get_u64(it, "id", &id) < 0 || get_u64(it, "parent", &parent) < 0 ||
            get_u64(it, "size", &size) < 0 || id == 0 || id >= st->next_layer ||
            layer_find(st, id) || parent >= id || size > VOL_MAX_SIZE)
            goto out;
        if (parent && !(p = layer_find(st, parent)))
            goto out; /* parents are listed first: they are older */
        if (!layer_new(st, id, p, size)) {
            r = -ENOMEM;
            goto out;
        }
        st->layers[st->nlayers - 1]->frozen = true;
    }
    arr = json_object_get(root, "volumes");
    if (!json_is_array(arr))
        goto out;
    json_array_foreach(arr, i, it)
    {
        if (load_entry(st, it, false) < 0)
            goto out;
        if (st->ents[st->nents - 1]->layer->frozen == false)
            goto out; /* two volumes share a top layer */
        st->ents[st->nents - 1]->layer->frozen = false;
    }
    arr = json_object_get(root, "snapshots");
    if (!json_is_array(arr))
        goto out;
    json_array_foreach(arr, i, it)
    {
        if (load_entry(st, it, true) < 0 || !st->ents[st->nents - 1]->layer->frozen)
            goto out;
    }
    r = 0;
out:
    json_decref(root);
    if (r == -EIO)
        return fail(err, r, "catalog of %s is damaged", st->dir);
    return r;
}

/* Removes files of layers the catalog does not name and leftover temp files. */
static void sweep(VolStore *st)
{
    int fd = dup(st->dirfd);
    DIR *d;
    struct dirent *de;

    if (fd < 0)
        return;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    while ((de = readdir(d))) {
        unsigned long long id;
        char ext[16];
        int n = 0;

        if (strncmp(de->d_name, CATALOG ".tmp", strlen(CATALOG ".tmp")) == 0) {
            (void)unlinkat(st->dirfd, de->d_name, 0);
            continue;
        }
        if (sscanf(de->d_name, "layer-%llu.%15[a-z.]%n", &id, ext, &n) != 2 ||
            de->d_name[n] != '\0')
            continue;
        if (strcmp(ext, "map.tmp") == 0 ||
            ((strcmp(ext, "data") == 0 || strcmp(ext, "map") == 0) && !layer_find(st, id)))
            (void)unlinkat(st->dirfd, de->d_name, 0);
    }
    closedir(d);
}

int vol_store_open(const char *dir, const uint8_t *master_key, bool fsync_, VolStore **ret,
                   SovBuf *err)
{
    VolStore *st = calloc(1, sizeof(*st));
    int r;

    if (!st)
        return -ENOMEM;
    st->dirfd = st->lockfd = -1;
    st->fsync = fsync_;
    if (master_key) {
        memcpy(st->master, master_key, VOL_MASTER_KEY_LEN);
        st->has_master = true;
    }
    st->dir = strdup(dir);
    if (!st->dir) {
        r = -ENOMEM;
        goto fail;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = fail(err, -errno, "cannot create store directory %s", dir);
        goto fail;
    }
    st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        r = fail(err, -errno, "cannot open store directory %s", dir);
        goto fail;
    }
    st->lockfd = openat(st->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lockfd < 0) {
        r = -errno;
        goto fail;
    }
    if (flock(st->lockfd, LOCK_EX | LOCK_NB) < 0) {
        r = fail(err, -EBUSY, "store %s is in use by another process", dir);
        goto fail;
    }
    r = catalog_load(st, err);
    if (r < 0)
        goto fail;
    sweep(st);
    *ret = st;
    return 0;
fail:
    vol_store_close(st);
    return r;
}

void vol_store_close(VolStore *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nents; i++) {
        Volume *v = st->ents[i]->open;
        if (v) {
            v->refs = 1;
            vol_close(v);
        }
    }
    for (size_t i = 0; i < st->nents; i++)
        entry_free(st->ents[i]);
    for (size_t i = 0; i < st->nlayers; i++)
        free(st->layers[i]);
    free(st->ents);
    free(st->layers);
    if (st->lockfd >= 0)
        close(st->lockfd);
    if (st->dirfd >= 0)
        close(st->dirfd);
    free(st->dir);
    OPENSSL_cleanse(st->master, sizeof(st->master));
    free(st);
}

/* Marks every layer a volume or snapshot needs; removes the others from catalog and disk. */
static int collect(VolStore *st)
{
    uint64_t dead[64];
    size_t ndead = 0;
    bool more = false;
    int r;

    for (size_t i = 0; i < st->nlayers; i++)
        st->layers[i]->mark = false;
    for (size_t i = 0; i < st->nents; i++)
        for (VolLayer *l = st->ents[i]->layer; l && !l->mark; l = l->parent)
            l->mark = true;
    for (size_t i = 0; i < st->nlayers;) {
        VolLayer *l = st->layers[i];
        if (l->mark || l->refs > 0) {
            i++;
            continue;
        }
        if (ndead == ELEMENTSOF(dead)) {
            more = true;
            break;
        }
        dead[ndead++] = l->id;
        drop_layer(st, l);
    }
    if (ndead == 0)
        return 0;
    r = vol_catalog_save(st);
    if (r < 0)
        return r; /* the files stay; the next open's sweep removes them */
    for (size_t i = 0; i < ndead; i++)
        vol_layer_remove_files(st, dead[i]);
    return more ? collect(st) : 0;
}

static int new_layer(VolStore *st, VolLayer *parent, uint64_t size, VolLayer **ret)
{
    VolLayer *l = layer_new(st, st->next_layer, parent, size);
    int r;

    if (!l)
        return -ENOMEM;
    r = vol_layer_create_files(st, l);
    if (r < 0) {
        vol_layer_remove_files(st, l->id);
        drop_layer(st, l);
        return r;
    }
    st->next_layer++;
    *ret = l;
    return 0;
}

static int wrap_new_key(VolStore *st, char **ret)
{
    uint8_t key[SOV_XTS_KEY_LEN], blob[WRAPPED_LEN];
    char *hex;
    int r;

    do {
        r = sov_random_bytes(key, sizeof(key));
        if (r < 0)
            return r;
    } while (CRYPTO_memcmp(key, key + 32, 32) == 0);
    r = sov_random_bytes(blob, SOV_GCM_IV_LEN);
    if (r == 0)
        r = sov_aes256_gcm_encrypt(st->master, blob, WRAP_AAD, strlen(WRAP_AAD), key, sizeof(key),
                                   blob + SOV_GCM_IV_LEN + SOV_GCM_TAG_LEN, blob + SOV_GCM_IV_LEN);
    OPENSSL_cleanse(key, sizeof(key));
    if (r < 0)
        return r;
    hex = malloc(2 * WRAPPED_LEN + 1);
    if (!hex)
        return -ENOMEM;
    sov_hex_encode(blob, WRAPPED_LEN, hex);
    *ret = hex;
    return 0;
}

int vol_key_unwrap(VolStore *st, const char *wrapped, uint8_t key[SOV_XTS_KEY_LEN])
{
    uint8_t blob[WRAPPED_LEN];
    int r;

    if (!st->has_master)
        return -ENOKEY;
    if (!wrapped || strlen(wrapped) != 2 * WRAPPED_LEN ||
        sov_hex_decode(wrapped, 2 * WRAPPED_LEN, blob) < 0)
        return -EIO;
    r = sov_aes256_gcm_decrypt(st->master, blob, WRAP_AAD, strlen(WRAP_AAD),
                               blob + SOV_GCM_IV_LEN + SOV_GCM_TAG_LEN, SOV_XTS_KEY_LEN, key,
                               blob + SOV_GCM_IV_LEN);
    if (r == -EBADMSG)
        return -EKEYREJECTED;
    return r;
}

static VolEntry *entry_new(const char *name, uint64_t size, bool snapshot, bool encrypted,
                           const char *wrapped, const char *origin)
{
    VolEntry *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    memcpy(e->name, name, strlen(name) + 1);
    memcpy(e->origin, origin, strlen(origin) + 1);
    e->size = size;
    e->is_snapshot = snapshot;
    e->encrypted = encrypted;
    e->created_ms = now_ms();
    if (wrapped && !(e->wrapped = strdup(wrapped))) {
        free(e);
        return NULL;
    }
    return e;
}

static int check_new_name(VolStore *st, const char *name, SovBuf *err)
{
    if (!name_valid(name))
        return fail(err, -EINVAL, "invalid name '%s'", name);
    if (vol_store_find(st, name))
        return fail(err, -EEXIST, "'%s' already exists", name);
    return 0;
}

/* Adds e (owning layer l, new) to the catalog and saves it; undoes everything on failure. */
static int commit_new(VolStore *st, VolEntry *e, VolLayer *l, SovBuf *err)
{
    int r = push_entry(st, e);

    if (r == 0) {
        r = vol_catalog_save(st);
        if (r < 0)
            drop_entry(st, e);
    }
    if (r < 0) {
        entry_free(e);
        vol_layer_remove_files(st, l->id);
        drop_layer(st, l);
        return fail(err, r, "cannot write the catalog of %s", st->dir);
    }
    return 0;
}

int vol_create(VolStore *st, const char *name, uint64_t size, bool encrypted, SovBuf *err)
{
    _cleanup_free_ char *wrapped = NULL;
    VolLayer *l;
    VolEntry *e;
    int r;

    r = check_new_name(st, name, err);
    if (r < 0)
        return r;
    if (size == 0 || size % VOL_SECTOR || size > VOL_MAX_SIZE)
        return fail(err, -EINVAL, "invalid size for '%s'", name);
    if (encrypted) {
        if (!st->has_master)
            return fail(err, -ENOKEY, "no master key to encrypt '%s'", name);
        r = wrap_new_key(st, &wrapped);
        if (r < 0)
            return fail(err, r, "cannot make a key for '%s'", name);
    }
    r = new_layer(st, NULL, size, &l);
    if (r < 0)
        return fail(err, r, "cannot create the files of '%s'", name);
    e = entry_new(name, size, false, encrypted, wrapped, "");
    if (!e) {
        vol_layer_remove_files(st, l->id);
        drop_layer(st, l);
        return -ENOMEM;
    }
    e->layer = l;
    return commit_new(st, e, l, err);
}

int vol_delete(VolStore *st, const char *name, SovBuf *err)
{
    VolEntry *e = vol_store_find(st, name);
    int r;

    if (!e)
        return fail(err, -ENOENT, "no volume or snapshot '%s'", name);
    if (e->open)
        return fail(err, -EBUSY, "'%s' is open", name);
    drop_entry(st, e);
    r = vol_catalog_save(st);
    if (r < 0) {
        (void)push_entry(st, e); /* cannot fail: the array had room for it */
        return fail(err, r, "cannot write the catalog (deleting '%s')", name);
    }
    entry_free(e);
    (void)collect(st); /* a failure leaves orphans that the next open sweeps */
    return 0;
}

int vol_snapshot(VolStore *st, const char *volume, const char *snapshot, SovBuf *err)
{
    VolEntry *e = vol_store_find(st, volume), *s;
    VolLayer *old, *l;
    int r;

    if (!e || e->is_snapshot)
        return fail(err, -ENOENT, "no volume '%s'", volume);
    r = check_new_name(st, snapshot, err);
    if (r < 0)
        return r;
    old = e->layer;
    if (e->open) {
        r = vol_volume_flush_layer(e->open);
        if (r < 0)
            return fail(err, r, "cannot flush '%s'", volume);
    }
    r = new_layer(st, old, e->size, &l);
    if (r < 0)
        return fail(err, r, "cannot create the files of '%s'", snapshot);
    s = entry_new(snapshot, e->size, true, e->encrypted, e->wrapped, volume);
    if (!s || push_entry(st, s) < 0) {
        entry_free(s);
        vol_layer_remove_files(st, l->id);
        drop_layer(st, l);
        return -ENOMEM;
    }
    if (e->open && (r = vol_layer_ref(st, l)) < 0) {
        drop_entry(st, s);
        entry_free(s);
        vol_layer_remove_files(st, l->id);
        drop_layer(st, l);
        return fail(err, r, "cannot open the new layer of '%s'", volume);
    }
    s->layer = old;
    e->layer = l;
    r = vol_catalog_save(st);
    if (r < 0) {
        e->layer = old;
        drop_entry(st, s);
        entry_free(s);
        if (e->open)
            vol_layer_unref(l);
        vol_layer_remove_files(st, l->id);
        drop_layer(st, l);
        return fail(err, r, "cannot write the catalog (snapshot '%s')", snapshot);
    }
    vol_layer_freeze(old);
    return 0;
}

int vol_clone(VolStore *st, const char *snapshot, const char *volume, SovBuf *err)
{
    VolEntry *s = vol_store_find(st, snapshot), *e;
    VolLayer *l;
    int r;

    if (!s || !s->is_snapshot)
        return fail(err, -ENOENT, "no snapshot '%s'", snapshot);
    r = check_new_name(st, volume, err);
    if (r < 0)
        return r;
    r = new_layer(st, s->layer, s->size, &l);
    if (r < 0)
        return fail(err, r, "cannot create the files of '%s'", volume);
    e = entry_new(volume, s->size, false, s->encrypted, s->wrapped, snapshot);
    if (!e) {
        vol_layer_remove_files(st, l->id);
        drop_layer(st, l);
        return -ENOMEM;
    }
    e->layer = l;
    return commit_new(st, e, l, err);
}

int vol_resize(VolStore *st, const char *name, uint64_t new_size, SovBuf *err)
{
    VolEntry *e = vol_store_find(st, name);
    uint64_t old_size, old_lsize;
    int r;

    if (!e || e->is_snapshot)
        return fail(err, -ENOENT, "no volume '%s'", name);
    if (new_size < e->size || new_size % VOL_SECTOR || new_size > VOL_MAX_SIZE)
        return fail(err, -EINVAL, "invalid new size for '%s'", name);
    if (new_size == e->size)
        return 0;
    old_size = e->size;
    old_lsize = e->layer->size;
    r = vol_layer_grow(e->layer, new_size);
    if (r < 0)
        return fail(err, r, "out of memory resizing '%s'", name);
    e->size = new_size;
    r = vol_catalog_save(st);
    if (r < 0) {
        e->size = old_size;
        e->layer->size = old_lsize; /* a longer map in memory is harmless */
        return fail(err, r, "cannot write the catalog (resizing '%s')", name);
    }
    return 0;
}

static int fill_info(VolStore *st, VolEntry *e, VolInfo *ret)
{
    uint64_t n = 0;
    int r;

    memset(ret, 0, sizeof(*ret));
    memcpy(ret->name, e->name, sizeof(ret->name));
    memcpy(ret->origin, e->origin, sizeof(ret->origin));
    ret->size = e->size;
    ret->encrypted = e->encrypted;
    ret->is_snapshot = e->is_snapshot;
    ret->created_ms = e->created_ms;
    r = vol_layer_count(st, e->layer, &n);
    if (r < 0)
        return r;
    ret->allocated = n * VOL_CLUSTER;
    return 0;
}

int vol_info(VolStore *st, const char *name, VolInfo *ret)
{
    VolEntry *e = vol_store_find(st, name);

    if (!e)
        return -ENOENT;
    return fill_info(st, e, ret);
}

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const VolInfo *)a)->name, ((const VolInfo *)b)->name);
}

int vol_list(VolStore *st, VolInfo **ret, size_t *ret_n)
{
    VolInfo *v = calloc(st->nents ? st->nents : 1, sizeof(*v));
    int r;

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < st->nents; i++) {
        r = fill_info(st, st->ents[i], &v[i]);
        if (r < 0) {
            free(v);
            return r;
        }
    }
    qsort(v, st->nents, sizeof(*v), info_cmp);
    *ret = v;
    *ret_n = st->nents;
    return 0;
}
