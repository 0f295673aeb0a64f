/* The block converter of pythonhosted.linehaul.columns, a line at a time in C.
 *
 * The rows of columns.convert_block, byte for byte: Converter.convert takes whole lines (each
 * ending with a newline) and appends their NDJSON rows to one growing buffer per table, which
 * finish() hands over (ingest calls it once per part of an object). A line it cannot convert
 * goes, in its turn, to the caller's fallback (the per-line parser), which appends what it
 * makes; so each line is looked at once, and rows keep the order of their lines.
 * It only splits lines, checks their structure and joins ready-made JSON fragments;
 * every decision about a field's value stays in Python: a fragment comes from the same memos
 * the Python path uses (a field -> its JSON fragment, or None when the parser must look).
 * Two kinds of line it settles itself, because a hostile object may hold a billion of them and
 * the per-line parser costs microseconds each: a blank line (nothing but spaces, tabs and CRs)
 * is counted and dropped; a line the parser would surely reject (fewer than ten fields, or a
 * kind field holding neither "download" nor "simple", whatever the parser's tidying does) is
 * copied verbatim to the unprocessed table.
 * Each converter keeps its own hash table per field in front of its memo, keyed by the raw
 * bytes, so a repeated value costs one hash and one memcmp instead of a bytes object, a
 * SipHash and a dict lookup. Those tables are bounded in entries (SLOTS / 2) and in the
 * bytes of the keys and fragments they hold (CACHE_BYTES): a log of unique values refills
 * them, it does not grow them. They start small (FIRST_SLOTS) and double as they fill, and
 * each table's buffer starts small too (FIRST_CAPACITY): a worker has many small objects
 * under way at once, each with its own converter, which must cost what its object holds
 * (a 10-line object kilobytes), not the 3 MB of full-size tables (and 2 MB per table's
 * buffer) each converter used to take from the start.
 *
 * A `served` line (`served|status|bytes sent|range requested|range start|` and five reserved
 * fields) carries the facts of the response of the download line after it: its first four
 * fields, as they stand, are the key of the response memo, whose fragment takes the place of
 * the file glue in that download's row. The converter keeps it (a copy of the line and the
 * fragment) until the next line that is not blank: a download row takes its facts, an
 * ignored event takes it along, the fallback gets it with the line; anything else (a simple
 * request's row, an unprocessable line) or the end of the object (flush) sends it to the
 * unprocessed table first. A served line's kind is exact and it has exactly
 * ten fields; one the memo cannot read is unprocessable.
 *
 * A line is `kind|timestamp|country|url|tls protocol|tls cipher|project|version|package
 * type|user agent`. A download's row is: timestamp, url, project, `,"file":{"filename":"`,
 * the url's last segment, project, version, package type, protocol, cipher, country, details;
 * a simple request's: timestamp, url, the project (the url's third "/" segment), protocol,
 * cipher, country, details. An agent whose details fragment is empty is ignored (counted, no
 * row), once its other fields show the line is not unprocessable.
 *
 * convert() releases the GIL while it works on lines that need no Python object: ingest
 * converts in a thread, and in `pythonhosted serve` every service's event loop (lease
 * renewals too) waits for the GIL; holding it for a whole block (~2,000 lines) stalled them
 * at every block. Without the GIL a line may only hit the hash tables (cache_find), copy
 * into a buffer that has room, and count: no reference count changes (the earliest timestamp
 * and a served line's fragment are borrowed from their hash tables, which change only on a
 * miss, under the GIL, and become owned when the GIL is taken back). Anything else (a miss,
 * an odd or unprocessable line, a buffer to grow, a served line's owned fragment to drop)
 * takes the GIL back and starts the line again with it; the next line lets it go again.
 * A converter is one thread's at a time (`converting`): another thread touching it while it
 * converts gets a RuntimeError.
 */
#define _GNU_SOURCE /* memrchr */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { /* the memos, in the order Converter takes them (columns._FIELD_MEMOS) */
    TIMESTAMP,
    PROJECT,
    VERSION,
    PACKAGE_TYPE,
    SIMPLE_PROJECT,
    TLS_PROTOCOL,
    TLS_CIPHER,
    COUNTRY,
    DETAILS,
    RESPONSE,
    N_MEMOS
};

static const char FILE_GLUE[] = ",\"file\":{\"filename\":\"";
#define FILE_GLUE_LEN (sizeof(FILE_GLUE) - 1)
#define SLOTS 8192 /* per field, at most; cleared when half full at this size */
#define FIRST_SLOTS 16 /* per field at first; doubled when half full, up to SLOTS */
#define CACHE_BYTES (4 << 20) /* per field: keys and fragments held; cleared when reached */

typedef struct {
    uint64_t hash;
    Py_ssize_t size;  /* the key's, kept here to spare a visit to the key on a mismatch */
    const char *data; /* the key's bytes */
    PyObject *key;    /* bytes, owned; NULL for an empty slot */
    PyObject *value;  /* the memo's fragment (bytes or None), owned */
} Slot;

typedef struct {
    Slot *slots;     /* NULL until the first value is kept */
    size_t capacity; /* slots allocated: a power of two, at most SLOTS */
    Slot *last; /* the slot found last: log lines come in time order, and consecutive lines
                 * mostly share their second, country, TLS fields... */
    size_t used;
    Py_ssize_t bytes; /* of the keys and fragments held */
    PyObject *memo;   /* owned: a mapping raw bytes -> fragment */
    PyObject *spare;  /* owned: the last fragment too heavy to keep, until the next one */
} Cache;

/* A growing bytes object: the rows of one table. */
typedef struct {
    PyObject *bytes; /* owned; NULL until the first row */
    Py_ssize_t size;
} Output;

enum { SIMPLE, DOWNLOADS, UNPROCESSED, N_TABLES };

typedef struct {
    PyObject_HEAD
    Cache caches[N_MEMOS];
    Output tables[N_TABLES];
    /* A served line waiting for the line after it (blocks and parts may come between). */
    PyObject *pending;      /* owned: its response fragment; NULL when none waits */
    char *pending_line;     /* a copy of the line, without its newline */
    Py_ssize_t pending_size;
    Py_ssize_t pending_capacity;
    unsigned long converting; /* the thread whose convert() is under way (perhaps without
                               * the GIL), else 0 */
} Converter;

static uint64_t
hash_bytes(const char *p, Py_ssize_t n)
{
    /* Two independent multiply-xor lanes over 16-byte steps: user agents are ~450 bytes. */
    uint64_t a = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n, b = 0xC2B2AE3D27D4EB4FULL;
    uint64_t w1, w2;
    while (n >= 16) {
        memcpy(&w1, p, 8);
        memcpy(&w2, p + 8, 8);
        a = (a ^ w1) * 0xFF51AFD7ED558CCDULL;
        b = (b ^ w2) * 0xC4CEB9FE1A85EC53ULL;
        a ^= a >> 29;
        b ^= b >> 31;
        p += 16;
        n -= 16;
    }
    if (n >= 8) {
        memcpy(&w1, p, 8);
        a = (a ^ w1) * 0xFF51AFD7ED558CCDULL;
        a ^= a >> 29;
        p += 8;
        n -= 8;
    }
    w2 = 0;
    memcpy(&w2, p, (size_t)n);
    b = (b ^ w2) * 0xC4CEB9FE1A85EC53ULL;
    a ^= b + (a << 6) + (a >> 2);
    a ^= a >> 33;
    a *= 0xFF51AFD7ED558CCDULL;
    a ^= a >> 33;
    return a;
}

static void
cache_clear(Cache *cache)
{
    for (size_t i = 0; i < cache->capacity; i++) {
        Slot *slot = &cache->slots[i];
        if (slot->key != NULL) {
            Py_CLEAR(slot->key);
            Py_CLEAR(slot->value);
        }
    }
    cache->used = 0;
    cache->bytes = 0;
    cache->last = NULL;
}

/* Room for one more value: the first slots, twice as many when half full, or (half full at
 * SLOTS) none kept. 0, or -1 with an exception set. */
static int
cache_make_room(Cache *cache)
{
    if (cache->capacity != 0 && cache->used * 2 < cache->capacity) {
        return 0;
    }
    if (cache->capacity == SLOTS) {
        cache_clear(cache);
        return 0;
    }
    size_t capacity = cache->capacity ? cache->capacity * 2 : FIRST_SLOTS;
    Slot *slots = PyMem_Calloc(capacity, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t j = 0; j < cache->capacity; j++) { /* rehash: each kept slot, moved */
        Slot *old = &cache->slots[j];
        if (old->key != NULL) {
            size_t i = old->hash & (capacity - 1);
            while (slots[i].key != NULL) {
                i = (i + 1) & (capacity - 1);
            }
            slots[i] = *old;
        }
    }
    PyMem_Free(cache->slots);
    cache->slots = slots;
    cache->capacity = capacity;
    cache->last = NULL;
    return 0;
}

/* The fragment kept for raw bytes p[0:n] (borrowed, valid until this cache's next miss), or
 * NULL when it holds none. Touches no Python object's reference count: safe without the GIL
 * (it only reads slots, which change on a miss, under the GIL). */
static PyObject *
cache_find(Cache *cache, const char *p, Py_ssize_t n)
{
    Slot *last = cache->last;
    if (last != NULL && last->size == n && memcmp(last->data, p, (size_t)n) == 0) {
        return last->value;
    }
    uint64_t hash = hash_bytes(p, n);
    size_t mask = cache->capacity - 1;
    for (size_t i = hash & mask; cache->capacity != 0; i = (i + 1) & mask) {
        Slot *slot = &cache->slots[i];
        if (slot->key == NULL) {
            break;
        }
        if (slot->hash == hash && slot->size == n && memcmp(slot->data, p, (size_t)n) == 0) {
            cache->last = slot;
            return slot->value;
        }
    }
    return NULL;
}

/* The fragment for raw bytes p[0:n] (borrowed, valid until this cache's next lookup), or
 * NULL with an exception set when the memo raised. Needs the GIL. */
static PyObject *
cache_get(Cache *cache, const char *p, Py_ssize_t n)
{
    PyObject *found = cache_find(cache, p, n);
    if (found != NULL) {
        return found;
    }
    uint64_t hash = hash_bytes(p, n);
    PyObject *key = PyBytes_FromStringAndSize(p, n);
    if (key == NULL) {
        return NULL;
    }
    PyObject *value = PyObject_GetItem(cache->memo, key);
    if (value != NULL && value != Py_None && !PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a memo gave %.100s, not bytes or None",
                     Py_TYPE(value)->tp_name);
        Py_CLEAR(value);
    }
    if (value == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_ssize_t weight = n + (value == Py_None ? 0 : PyBytes_GET_SIZE(value));
    if (weight > CACHE_BYTES / 8) { /* it would clear the table for one value */
        Py_DECREF(key);
        Py_XSETREF(cache->spare, value);
        return value;
    }
    if (cache->bytes + weight > CACHE_BYTES) {
        cache_clear(cache);
    }
    if (cache_make_room(cache) < 0) {
        Py_DECREF(key);
        Py_DECREF(value);
        return NULL;
    }
    size_t i = hash & (cache->capacity - 1);
    while (cache->slots[i].key != NULL) {
        i = (i + 1) & (cache->capacity - 1);
    }
    Slot *slot = &cache->slots[i];
    slot->hash = hash;
    slot->size = n;
    slot->data = PyBytes_AS_STRING(key);
    slot->key = key;
    slot->value = value;
    cache->used++;
    cache->bytes += weight;
    cache->last = slot;
    return value;
}

#define FIRST_CAPACITY (16 << 10) /* doubled as rows come (a part is up to 64 MB) */

static int
output_reserve(Output *out, Py_ssize_t extra)
{
    Py_ssize_t capacity = out->bytes == NULL ? 0 : PyBytes_GET_SIZE(out->bytes);
    if (out->size + extra <= capacity) {
        return 0;
    }
    Py_ssize_t wanted = capacity ? capacity * 2 : FIRST_CAPACITY;
    if (wanted < out->size + extra) {
        wanted = out->size + extra;
    }
    if (out->bytes == NULL) {
        out->bytes = PyBytes_FromStringAndSize(NULL, wanted);
    }
    else if (_PyBytes_Resize(&out->bytes, wanted) < 0) {
        out->size = 0;
    }
    if (out->bytes == NULL) {
        return -1;
    }
    return 0;
}

static int
output_write(Output *out, const char *p, Py_ssize_t size)
{
    if (size == 0) {
        return 0;
    }
    if (output_reserve(out, size) < 0) {
        return -1;
    }
    memcpy(PyBytes_AS_STRING(out->bytes) + out->size, p, (size_t)size);
    out->size += size;
    return 0;
}

static int
output_append(Output *out, PyObject *rows)
{
    return output_write(out, PyBytes_AS_STRING(rows), PyBytes_GET_SIZE(rows));
}

static inline char *
put(char *at, const char *p, Py_ssize_t n)
{
    memcpy(at, p, (size_t)n);
    return at + n;
}

static inline char *
put_bytes(char *at, PyObject *fragment)
{
    return put(at, PyBytes_AS_STRING(fragment), PyBytes_GET_SIZE(fragment));
}

/* The rows so far (a new reference); the output starts again empty. */
static PyObject *
output_finish(Output *out)
{
    if (out->bytes == NULL) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    PyObject *bytes = out->bytes;
    Py_ssize_t size = out->size;
    out->bytes = NULL;
    out->size = 0;
    if (_PyBytes_Resize(&bytes, size) < 0) {
        return NULL;
    }
    return bytes;
}

/* Whether a url can be copied into a JSON string as it is (no blank, control, quote,
 * backslash or DEL; the block is valid UTF-8). */
static int
verbatim(const unsigned char *p, Py_ssize_t n)
{
    unsigned char bad = 0; /* no branch per byte: the compiler vectorises this loop */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        bad |= (c <= 0x20) | (c == '"') | (c == '\\') | (c == 0x7F);
    }
    return !bad;
}

static int
is_fragment(PyObject *value)
{
    return value != Py_None;
}

/* bytes comparison as Python orders bytes objects */
static int
less(PyObject *a, PyObject *b)
{
    Py_ssize_t na = PyBytes_GET_SIZE(a), nb = PyBytes_GET_SIZE(b);
    int order = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), (size_t)(na < nb ? na : nb));
    return order < 0 || (order == 0 && na < nb);
}

/* Whether p[0:n] is nothing but spaces, tabs and CRs (an empty line too). */
static int
blank(const char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
            return 0;
        }
    }
    return 1;
}

/* Whether p[0:n] holds a byte outside ASCII. */
static int
has_high_byte(const unsigned char *p, Py_ssize_t n)
{
    unsigned char any = 0; /* no branch per byte: vectorised */
    for (Py_ssize_t i = 0; i < n; i++) {
        any |= p[i];
    }
    return any >= 0x80;
}

/* Keep a served line (and its fragment, a new reference taken here) until the next line. */
static int
pending_keep(Converter *self, const char *line, Py_ssize_t size, PyObject *fragment)
{
    if (size > self->pending_capacity) {
        char *grown = PyMem_Realloc(self->pending_line, (size_t)size);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->pending_line = grown;
        self->pending_capacity = size;
    }
    memcpy(self->pending_line, line, (size_t)size);
    self->pending_size = size;
    Py_INCREF(fragment);
    Py_XSETREF(self->pending, fragment);
    return 0;
}

/* A waiting served line that no download line took: to the unprocessed table. Returns the
 * lines it wrote (0 or 1), or -1 with an exception set. */
static int
pending_orphan(Converter *self)
{
    if (self->pending == NULL) {
        return 0;
    }
    Py_CLEAR(self->pending);
    Output *out = &self->tables[UNPROCESSED];
    if (output_write(out, self->pending_line, self->pending_size) < 0 ||
        output_write(out, "\n", 1) < 0) {
        return -1;
    }
    return 1;
}

#define FIELDS 10

/* Whether another thread is converting with this converter (RuntimeError set): its
 * convert() works without the GIL, so nothing else may touch the converter meanwhile. The
 * converting thread itself may (its fallback appends the rows it makes). */
static int
in_use(Converter *self)
{
    if (self->converting != 0 && self->converting != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "the converter is in use by another thread");
        return 1;
    }
    return 0;
}

/* The GIL is released while Converter.convert works on lines that need no Python object
 * (see the module doc): these step back to the line's start and take the GIL first. */
#define WITH_GIL()                                                                          \
    do {                                                                                    \
        if (released != NULL) {                                                             \
            p = line;                                                                       \
            goto take_gil;                                                                  \
        }                                                                                   \
    } while (0)

/* var = the fragment for p[0:n] from the memo's cache; a miss takes the GIL (or fails). */
#define FRAGMENT(var, memo, start, size)                                                    \
    do {                                                                                    \
        Cache *cache_ = &self->caches[memo];                                                \
        if ((var = cache_find(cache_, start, size)) == NULL) {                              \
            WITH_GIL();                                                                     \
            if ((var = cache_get(cache_, start, size)) == NULL) {                           \
                goto error;                                                                 \
            }                                                                               \
        }                                                                                   \
    } while (0)
#define LOOK_UP(var, memo, index) FRAGMENT(var, memo, fields[index], sizes[index])

/* A waiting served line taken by this line: without the GIL it is borrowed (see below). */
#define DROP_PENDING()                                                                      \
    do {                                                                                    \
        if (released != NULL) {                                                             \
            self->pending = NULL;                                                           \
        }                                                                                   \
        else {                                                                              \
            Py_CLEAR(self->pending);                                                        \
        }                                                                                   \
    } while (0)

/* Hold the GIL again: what was only borrowed without it (the earliest timestamp, a served
 * line's fragment) becomes owned, before any miss can drop it from its cache. */
#define HOLD_GIL()                                                                          \
    do {                                                                                    \
        PyEval_RestoreThread(released);                                                     \
        released = NULL;                                                                    \
        if (low_borrowed) {                                                                 \
            Py_INCREF(low);                                                                 \
            Py_XSETREF(earliest, low);                                                      \
            low_borrowed = 0;                                                               \
        }                                                                                   \
        if (pending_borrowed) {                                                             \
            Py_XINCREF(self->pending);                                                      \
            pending_borrowed = 0;                                                           \
        }                                                                                   \
    } while (0)

static PyObject *
Converter_convert(Converter *self, PyObject *args)
{
    PyObject *block, *fallback;
    int utf8;
    if (!PyArg_ParseTuple(args, "SOp:convert", &block, &fallback, &utf8)) {
        return NULL;
    }
    if (in_use(self)) {
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(block);
    const char *end = p + PyBytes_GET_SIZE(block);
    Output *tables = self->tables;
    Py_ssize_t rows = 0, ignored = 0, blanks = 0, unprocessable = 0, served = 0;
    int orphans;
    PyObject *earliest = NULL; /* owned */
    PyObject *result = NULL;
    /* Without the GIL: its thread state, else NULL. Then nothing's reference count changes:
     * the earliest timestamp so far (low) and a served line's fragment (self->pending) are
     * borrowed from their caches, which change only on a miss, under the GIL. */
    PyThreadState *released = NULL;
    PyObject *low = NULL; /* the earliest timestamp: earliest, or borrowed */
    int low_borrowed = 0, pending_borrowed = 0;
    int keep_gil = 0; /* for the line that took it back */

    unsigned long outer = self->converting; /* this thread's, when a fallback converts */
    self->converting = PyThread_get_thread_ident(); /* no other thread may touch it now */
    while (p < end) {
        const char *line = p;
        if (released == NULL && !keep_gil) {
            released = PyEval_SaveThread();
        }
        keep_gil = 0;
        if (released != NULL && self->pending != NULL && !pending_borrowed) {
            goto take_gil; /* an owned fragment: dropping it changes its count */
        }
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        if (newline == NULL) {
            WITH_GIL();
            PyErr_SetString(PyExc_ValueError, "a block must end with a newline");
            goto error;
        }
        p = newline + 1;
        if (newline == line) { /* and the empty lines right after it, in one sweep */
            const char *more = p;
            while (more < end && *more == '\n') {
                more++;
            }
            blanks += 1 + (more - p);
            p = more;
            continue;
        }
        if ((*line == ' ' || *line == '\t' || *line == '\r') && blank(line, newline - line)) {
            blanks++;
            continue;
        }
        const char *fields[FIELDS];
        Py_ssize_t sizes[FIELDS];
        const char *at = line;
        for (int k = 0; k < FIELDS - 1; k++) {
            const char *bar = memchr(at, '|', (size_t)(newline - at));
            if (bar == NULL) {
                goto unprocessable; /* fewer than ten fields */
            }
            fields[k] = at;
            sizes[k] = bar - at;
            at = bar + 1;
        }
        fields[FIELDS - 1] = at;
        sizes[FIELDS - 1] = newline - at;

        int download;
        if (sizes[0] == 6 && memcmp(fields[0], "served", 6) == 0) {
            PyObject *response;
            if (memchr(at, '|', (size_t)(newline - at)) != NULL) {
                goto unprocessable; /* more than ten fields */
            }
            /* the key: the first four facts, from the status to the range start */
            FRAGMENT(response, RESPONSE, fields[1], fields[4] + sizes[4] - fields[1]);
            if (!is_fragment(response)) {
                goto unprocessable;
            }
            if (released != NULL) { /* kept borrowed; else an orphan or a longer copy */
                if (self->pending != NULL || newline - line > self->pending_capacity) {
                    WITH_GIL();
                }
                memcpy(self->pending_line, line, (size_t)(newline - line));
                self->pending_size = newline - line;
                self->pending = response;
                pending_borrowed = 1;
                continue;
            }
            if ((orphans = pending_orphan(self)) < 0) {
                goto error;
            }
            unprocessable += orphans;
            if (pending_keep(self, line, newline - line, response) < 0) {
                goto error;
            }
            continue;
        }
        if (sizes[0] == 8 && memcmp(fields[0], "download", 8) == 0) {
            download = 1;
        }
        else if (sizes[0] == 6 && memcmp(fields[0], "simple", 6) == 0) {
            download = 0;
        }
        else if (memmem(fields[0], (size_t)sizes[0], "download", 8) == NULL &&
                 memmem(fields[0], (size_t)sizes[0], "simple", 6) == NULL) {
            goto unprocessable; /* no tidying makes it a known kind */
        }
        else {
            goto fallback;
        }
        if (memchr(at, '|', (size_t)(newline - at)) != NULL ||
            (!utf8 && has_high_byte((const unsigned char *)line, newline - line))) {
            goto fallback; /* a | in the agent; bytes that may not be UTF-8 */
        }
        const char *url = fields[3];
        Py_ssize_t url_size = sizes[3];
        if (!verbatim((const unsigned char *)url, url_size)) {
            goto fallback;
        }
        const char *segment = NULL; /* a download's filename, a simple request's project */
        Py_ssize_t segment_size = 0;
        PyObject *project, *version = NULL, *package_type = NULL;
        if (download) {
            if (url_size == 0) {
                goto fallback;
            }
            const char *slash = memrchr(url, '/', (size_t)url_size);
            segment = slash == NULL ? url : slash + 1;
            segment_size = url + url_size - segment;
            LOOK_UP(project, PROJECT, 6);
            LOOK_UP(version, VERSION, 7);
            LOOK_UP(package_type, PACKAGE_TYPE, 8);
            if (!is_fragment(project) || !is_fragment(version) || !is_fragment(package_type)) {
                goto fallback;
            }
        }
        else {
            if (sizes[6] || sizes[7] || sizes[8]) {
                goto fallback;
            }
            const char *first = memchr(url, '/', (size_t)url_size);
            const char *second =
                first == NULL ? NULL : memchr(first + 1, '/', (size_t)(url + url_size - first - 1));
            if (second == NULL) {
                goto fallback;
            }
            segment = second + 1;
            const char *third = memchr(segment, '/', (size_t)(url + url_size - segment));
            segment_size = (third == NULL ? url + url_size : third) - segment;
            FRAGMENT(project, SIMPLE_PROJECT, segment, segment_size);
            if (!is_fragment(project)) {
                goto fallback;
            }
        }
        PyObject *timestamp, *protocol, *cipher, *country, *details;
        LOOK_UP(timestamp, TIMESTAMP, 1);
        LOOK_UP(protocol, TLS_PROTOCOL, 4);
        LOOK_UP(cipher, TLS_CIPHER, 5);
        LOOK_UP(country, COUNTRY, 2);
        LOOK_UP(details, DETAILS, 9);
        if (!is_fragment(timestamp) || !is_fragment(protocol) || !is_fragment(cipher) ||
            !is_fragment(country) || !is_fragment(details)) {
            goto fallback;
        }
        if (PyBytes_GET_SIZE(details) == 0) {
            ignored++;
            if (self->pending != NULL) { /* an ignored event takes its served line along */
                served++;
                DROP_PENDING();
            }
            continue;
        }
        if (!download && self->pending != NULL) { /* a simple request's row takes no facts */
            WITH_GIL();
            if ((orphans = pending_orphan(self)) < 0) {
                goto error;
            }
            unprocessable += orphans;
        }
        PyObject *glue = self->pending; /* a download's response fragment, or NULL */
        Py_ssize_t size = PyBytes_GET_SIZE(timestamp) + url_size + PyBytes_GET_SIZE(project) +
                          PyBytes_GET_SIZE(protocol) + PyBytes_GET_SIZE(cipher) +
                          PyBytes_GET_SIZE(country) + PyBytes_GET_SIZE(details);
        if (download) {
            size += (glue == NULL ? (Py_ssize_t)FILE_GLUE_LEN : PyBytes_GET_SIZE(glue)) +
                    segment_size + PyBytes_GET_SIZE(project) + PyBytes_GET_SIZE(version) +
                    PyBytes_GET_SIZE(package_type);
        }
        Output *out = &tables[download];
        if (out->bytes == NULL || out->size + size > PyBytes_GET_SIZE(out->bytes)) {
            WITH_GIL(); /* a new or bigger buffer */
            if (output_reserve(out, size) < 0) {
                goto error;
            }
        }
        char *row = PyBytes_AS_STRING(out->bytes) + out->size;
        row = put_bytes(row, timestamp);
        row = put(row, url, url_size);
        row = put_bytes(row, project);
        if (download) {
            row = glue == NULL ? put(row, FILE_GLUE, FILE_GLUE_LEN) : put_bytes(row, glue);
            row = put(row, segment, segment_size);
            row = put_bytes(row, project);
            row = put_bytes(row, version);
            row = put_bytes(row, package_type);
        }
        row = put_bytes(row, protocol);
        row = put_bytes(row, cipher);
        row = put_bytes(row, country);
        put_bytes(row, details);
        out->size += size;
        rows++;
        if (glue != NULL) {
            served++;
            DROP_PENDING();
        }
        if (low == NULL || less(timestamp, low)) {
            if (released != NULL) {
                low = timestamp;
                low_borrowed = 1;
            }
            else {
                Py_INCREF(timestamp);
                Py_XSETREF(earliest, timestamp);
                low = earliest;
                low_borrowed = 0;
            }
        }
        continue;

    unprocessable:
        WITH_GIL();
        if ((orphans = pending_orphan(self)) < 0) {
            goto error;
        }
        unprocessable += orphans;
        if (output_write(&tables[UNPROCESSED], line, p - line) < 0) {
            goto error;
        }
        unprocessable++;
        continue;

    fallback : {
        WITH_GIL();
        /* the line, and the served line before it (which the fallback settles) */
        PyObject *text = PyBytes_FromStringAndSize(line, newline - line);
        if (text == NULL) {
            goto error;
        }
        PyObject *before = Py_None;
        if (self->pending != NULL) {
            before = PyBytes_FromStringAndSize(self->pending_line, self->pending_size);
            if (before == NULL) {
                Py_DECREF(text);
                goto error;
            }
            Py_CLEAR(self->pending);
        }
        else {
            Py_INCREF(before);
        }
        PyObject *done = PyObject_CallFunctionObjArgs(fallback, text, before, NULL);
        Py_DECREF(text);
        Py_DECREF(before);
        if (done == NULL) {
            goto error;
        }
        Py_DECREF(done);
        continue;
    }

    take_gil:
        HOLD_GIL();
        keep_gil = 1;
    }
    if (released != NULL) {
        HOLD_GIL();
    }
    result = Py_BuildValue("(nnnnnO)", rows, ignored, blanks, unprocessable, served,
                           earliest == NULL ? Py_None : earliest);
error:
    if (released != NULL) {
        HOLD_GIL();
    }
    self->converting = outer;
    Py_XDECREF(earliest);
    return result;
}

static PyObject *
Converter_append(Converter *self, PyObject *args)
{
    PyObject *downloads, *simple, *unprocessed;
    if (!PyArg_ParseTuple(args, "SSS:append", &downloads, &simple, &unprocessed)) {
        return NULL;
    }
    if (in_use(self)) {
        return NULL;
    }
    if (output_append(&self->tables[DOWNLOADS], downloads) < 0 ||
        output_append(&self->tables[SIMPLE], simple) < 0 ||
        output_append(&self->tables[UNPROCESSED], unprocessed) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Converter_flush(Converter *self, PyObject *Py_UNUSED(ignored))
{
    if (in_use(self)) {
        return NULL;
    }
    int orphans = pending_orphan(self);
    if (orphans < 0) {
        return NULL;
    }
    return PyLong_FromLong(orphans);
}

static PyObject *
Converter_pending(Converter *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t total = 0;
    for (int k = 0; k < N_TABLES; k++) {
        total += self->tables[k].size;
    }
    return PyLong_FromSsize_t(total);
}

static PyObject *
Converter_finish(Converter *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *downloads = NULL, *simple = NULL, *unprocessed = NULL;
    if (in_use(self)) {
        return NULL;
    }
    if ((downloads = output_finish(&self->tables[DOWNLOADS])) == NULL ||
        (simple = output_finish(&self->tables[SIMPLE])) == NULL ||
        (unprocessed = output_finish(&self->tables[UNPROCESSED])) == NULL) {
        Py_XDECREF(downloads);
        Py_XDECREF(simple);
        return NULL;
    }
    return Py_BuildValue("(NNN)", downloads, simple, unprocessed);
}

static PyObject *
Converter_cache_sizes(Converter *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *sizes = PyTuple_New(N_MEMOS);
    if (sizes == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_MEMOS; i++) {
        PyObject *pair = Py_BuildValue("(nn)", (Py_ssize_t)self->caches[i].used,
                                       self->caches[i].bytes);
        if (pair == NULL) {
            Py_DECREF(sizes);
            return NULL;
        }
        PyTuple_SET_ITEM(sizes, i, pair);
    }
    return sizes;
}

static int
Converter_init(Converter *self, PyObject *args, PyObject *kwargs)
{
    PyObject *memos[N_MEMOS];
    static char *names[] = {
        "timestamp",    "project",    "version", "package_type", "simple_project",
        "tls_protocol", "tls_cipher", "country", "details",      "response",
        NULL};
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "OOOOOOOOOO:Converter", names, &memos[0], &memos[1], &memos[2],
            &memos[3], &memos[4], &memos[5], &memos[6], &memos[7], &memos[8], &memos[9])) {
        return -1;
    }
    if (in_use(self)) {
        return -1;
    }
    Py_CLEAR(self->pending);
    for (int i = 0; i < N_MEMOS; i++) {
        Cache *cache = &self->caches[i];
        if (cache->slots != NULL) {
            cache_clear(cache);
        }
        Py_INCREF(memos[i]);
        Py_XSETREF(cache->memo, memos[i]);
    }
    return 0;
}

static int
Converter_traverse(Converter *self, visitproc visit, void *arg)
{
    for (int i = 0; i < N_MEMOS; i++) {
        Py_VISIT(self->caches[i].memo);
    }
    return 0;
}

static int
Converter_clear(Converter *self)
{
    for (int i = 0; i < N_MEMOS; i++) {
        Py_CLEAR(self->caches[i].memo);
    }
    return 0;
}

static void
Converter_dealloc(Converter *self)
{
    PyObject_GC_UnTrack(self);
    Converter_clear(self);
    for (int i = 0; i < N_MEMOS; i++) {
        Cache *cache = &self->caches[i];
        if (cache->slots != NULL) {
            cache_clear(cache);
            PyMem_Free(cache->slots);
        }
        Py_CLEAR(cache->spare);
    }
    for (int k = 0; k < N_TABLES; k++) {
        Py_CLEAR(self->tables[k].bytes);
    }
    Py_CLEAR(self->pending);
    PyMem_Free(self->pending_line);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Converter_methods[] = {
    {"convert", (PyCFunction)Converter_convert, METH_VARARGS,
     "convert(block, fallback, utf8) -> (rows, ignored, blank, unprocessable, served, "
     "earliest timestamp fragment): the block's rows and unprocessable lines appended to the "
     "tables; each line it cannot convert (without its newline) is passed to "
     "fallback(line, served line before it or None) in its turn. utf8: the block is known "
     "to be valid UTF-8 (else lines with other bytes go to fallback)."},
    {"flush", (PyCFunction)Converter_flush, METH_NOARGS,
     "flush() -> 0 or 1: a served line still waiting for its line goes to the unprocessed "
     "table (the object ended)."},
    {"append", (PyCFunction)Converter_append, METH_VARARGS,
     "append(downloads, simple, unprocessed): results made elsewhere, appended to the tables."},
    {"pending", (PyCFunction)Converter_pending, METH_NOARGS,
     "pending() -> the bytes held in the tables."},
    {"finish", (PyCFunction)Converter_finish, METH_NOARGS,
     "finish() -> (downloads, simple, unprocessed): the tables' contents; they start again "
     "empty."},
    {"cache_sizes", (PyCFunction)Converter_cache_sizes, METH_NOARGS,
     "cache_sizes() -> ((entries, bytes) per field table), in the order of the memos."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ConverterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pythonhosted.linehaul._columns.Converter",
    .tp_basicsize = sizeof(Converter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Converter(timestamp, project, version, package_type, simple_project, "
              "tls_protocol, tls_cipher, country, details, response): blocks of log lines -> "
              "NDJSON rows, each field's JSON fragment from its memo (raw bytes -> bytes or "
              "None).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Converter_init,
    .tp_dealloc = (destructor)Converter_dealloc,
    .tp_traverse = (traverseproc)Converter_traverse,
    .tp_clear = (inquiry)Converter_clear,
    .tp_methods = Converter_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pythonhosted.linehaul._columns",
    .m_doc = "The block converter of pythonhosted.linehaul.columns, in C.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__columns(void)
{
    if (PyType_Ready(&ConverterType) < 0) {
        return NULL;
    }
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(mod, "Converter", (PyObject *)&ConverterType) < 0 ||
        PyModule_AddIntConstant(mod, "CACHE_ENTRIES", SLOTS / 2) < 0 ||
        PyModule_AddIntConstant(mod, "CACHE_BYTES", CACHE_BYTES) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
