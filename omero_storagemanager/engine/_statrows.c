/* _statrows: the common case of a stat scan's per-file loop (engine/statworker.py), in C.

Why C: a warm stat scan of a million files is CPU-bound, and the Python loop spends
about 3.6 microseconds of interpreter time per file around a stat call the kernel
answers in about 2 (measured, docs/performance.md). This module does only the rows
whose outcome is plain: the file is there and its size is OMERO's. Every other row
(a missing file, a size that differs, a field with an escape, anything it cannot
parse) is handed back untouched, and statworker.check_rows handles it exactly as
before. So there is one definition of what a problem is (the Python one), and this
module only adds figures the Python loop would have added in the same way:
tests/test_statrows.py runs both on the same rows and compares every figure.

    stat_rows(block, end, managed, data) -> (runs, rest, rows, row_bytes)

block[:end] holds whole COPY text rows (bulk.rows_sql, stat mode). `managed` and
`data` end with "/". `runs` is a list of (unit type, unit id, files, bytes, unhashed,
symlinks, pyramids, thumbnails, thumbnail bytes, newest, accessed), one per run of
rows of a unit (newest and accessed None when no file of the run was found); `rest`
the rows handed back; `rows` and `row_bytes` the progress of the rows counted here
(bytes of the files, thumbnails aside, as the Python loop reports them).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIELDS 9
enum { UNIT_TYPE, UNIT_ID, KIND, FOLDER, NAME, IDENT, SIZE, DIGEST, HASHER };

typedef struct { const char *p; Py_ssize_t n; } field;

typedef struct {
    field type, id;
    long long files, bytes, unhashed, symlinks, pyramids, thumbs, thumb_bytes;
    double newest, accessed;
    int found;  /* a file of the run was found: newest and accessed hold values */
} run;

static int is_null(field f) { return f.n == 2 && f.p[0] == '\\' && f.p[1] == 'N'; }

static int equals(field f, const char *s) {
    size_t n = strlen(s);
    return (size_t)f.n == n && memcmp(f.p, s, n) == 0;
}

/* Splits a row into its fields; 0 when it is not one the fast path may take: not
   nine fields, or a field other than \N with a backslash (an escaped tab, newline or
   backslash in an odd file name: check_rows unescapes those). */
static int split(const char *p, const char *end, field *out) {
    int count = 0;
    const char *start = p;
    for (;; p++) {
        if (p == end || *p == '\t') {
            if (count == FIELDS) return 0;
            out[count].p = start;
            out[count].n = p - start;
            if (!is_null(out[count]) && memchr(start, '\\', p - start)) return 0;
            count++;
            if (p == end) break;
            start = p + 1;
        }
    }
    return count == FIELDS;
}

/* A non-negative decimal (what int() of the field gives); 0 when it is not one. */
static int parse_ull(field f, unsigned long long *value) {
    unsigned long long v = 0;
    if (f.n == 0 || f.n > 19) return 0;
    for (Py_ssize_t i = 0; i < f.n; i++) {
        if (f.p[i] < '0' || f.p[i] > '9') return 0;
        v = v * 10 + (unsigned long long)(f.p[i] - '0');
    }
    *value = v;
    return 1;
}

/* `base` + `sub` + OMERO's numbered layout of `id` (catalog/paths.numbered):
   1234567 -> Dir-001/Dir-234/1234567. 0 when it does not fit. */
static int numbered_path(char *buf, size_t size, const char *base, const char *sub,
                         unsigned long long id) {
    unsigned dirs[8];
    int levels = 0;
    unsigned long long remaining = id;
    while (remaining > 999) {
        remaining /= 1000;
        dirs[levels++] = (unsigned)(remaining % 1000);
    }
    int n = snprintf(buf, size, "%s%s", base, sub);
    for (int i = levels - 1; i >= 0 && n >= 0 && (size_t)n < size; i--)
        n += snprintf(buf + n, size - n, "Dir-%03u/", dirs[i]);
    if (n < 0 || (size_t)n >= size) return 0;
    n += snprintf(buf + n, size - n, "%llu", id);
    return n >= 0 && (size_t)n < size;
}

/* CPython's float of a stat time (posixmodule.c fill_time), so both loops agree to
   the last bit; setup.py builds with -ffp-contract=off for the same reason. */
static double seconds(struct timespec t) {
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static PyObject *time_or_none(int found, double t) {
    if (found) return PyFloat_FromDouble(t);
    Py_RETURN_NONE;
}

static int emit(PyObject *runs, run *r) {
    if (r->type.p == NULL) return 0;
    PyObject *newest = time_or_none(r->found, r->newest);
    PyObject *accessed = time_or_none(r->found, r->accessed);
    PyObject *item = NULL;
    if (newest && accessed)
        item = Py_BuildValue("(y#y#LLLLLLLOO)", r->type.p, r->type.n, r->id.p, r->id.n,
                             r->files, r->bytes, r->unhashed, r->symlinks, r->pyramids,
                             r->thumbs, r->thumb_bytes, newest, accessed);
    Py_XDECREF(newest);
    Py_XDECREF(accessed);
    if (item == NULL) return -1;
    int failed = PyList_Append(runs, item);
    Py_DECREF(item);
    return failed;
}

static PyObject *stat_rows(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer block;
    Py_ssize_t end;
    const char *managed, *data;
    if (!PyArg_ParseTuple(args, "y*nyy", &block, &end, &managed, &data)) return NULL;
    if (end < 0 || end > block.len) {
        PyBuffer_Release(&block);
        PyErr_SetString(PyExc_ValueError, "end is outside the block");
        return NULL;
    }
    PyObject *runs = PyList_New(0), *rest = PyList_New(0), *result = NULL;
    const char *p = block.buf, *stop = p + end;
    field f[FIELDS], folder_now = {NULL, -1};
    int fd = -1;  /* the descriptor of folder_now; -1: not opened (cannot be) */
    char path[PATH_MAX + 1], name[NAME_MAX + 1];
    run current;
    memset(&current, 0, sizeof current);
    long long rows = 0, row_bytes = 0;
    if (runs == NULL || rest == NULL) goto done;

    while (p < stop) {
        const char *eol = memchr(p, '\n', stop - p);
        const char *line_end = eol ? eol : stop, *next = eol ? eol + 1 : stop;
        struct stat st;
        int found = 0, link = 0, thumbnail;
        if (!split(p, line_end, f)) goto hand_back;
        thumbnail = equals(f[KIND], "thumbnail");
        if (!is_null(f[FOLDER])) {
            if (is_null(f[NAME]) || f[NAME].n > NAME_MAX) goto hand_back;
            if (folder_now.n != f[FOLDER].n || memcmp(folder_now.p, f[FOLDER].p, f[FOLDER].n)) {
                if (fd >= 0) close(fd);
                fd = -1;
                folder_now = f[FOLDER];
                /* A "/" more at either end of the folder changes nothing here. */
                int n = snprintf(path, sizeof path, "%s%.*s", managed,
                                 (int)f[FOLDER].n, f[FOLDER].p);
                if (n >= 0 && (size_t)n < sizeof path)
                    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            }
            if (fd >= 0) {
                field given = f[NAME];
                while (given.n > 0 && given.p[0] == '/') {  /* else fstatat ignores fd */
                    given.p++;
                    given.n--;
                }
                memcpy(name, given.p, given.n);
                name[given.n] = '\0';
                found = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
                if (found && S_ISLNK(st.st_mode)) {  /* in-place import: the target's data */
                    link = 1;
                    found = fstatat(fd, name, &st, 0) == 0;
                }
            }
        } else {
            if (!is_null(f[NAME])) {  /* a pyramid: the name is its path below the data dir */
                int n = snprintf(path, sizeof path, "%s%.*s", data, (int)f[NAME].n, f[NAME].p);
                if (n < 0 || (size_t)n >= sizeof path) goto hand_back;
            } else {
                unsigned long long id;
                const char *sub = thumbnail ? "Thumbnails/"
                                  : equals(f[KIND], "pixels") ? "Pixels/" : "Files/";
                if (!parse_ull(f[IDENT], &id)
                        || !numbered_path(path, sizeof path, data, sub, id))
                    goto hand_back;
            }
            found = lstat(path, &st) == 0;
            if (found && S_ISLNK(st.st_mode)) {
                link = 1;
                found = stat(path, &st) == 0;
            }
        }
        if (!thumbnail) {
            unsigned long long omero_size;
            if (!found) goto hand_back;  /* missing: a problem, check_rows reports it */
            if (!is_null(f[SIZE])) {
                if (!parse_ull(f[SIZE], &omero_size)) goto hand_back;
                if ((long long)omero_size != (long long)st.st_size) goto hand_back;
            }
        }
        /* The row counts here: start a new run when the unit changes. */
        if (current.type.p == NULL || !(current.type.n == f[UNIT_TYPE].n &&
                current.id.n == f[UNIT_ID].n &&
                memcmp(current.type.p, f[UNIT_TYPE].p, f[UNIT_TYPE].n) == 0 &&
                memcmp(current.id.p, f[UNIT_ID].p, f[UNIT_ID].n) == 0)) {
            if (emit(runs, &current) < 0) goto done;
            memset(&current, 0, sizeof current);
            current.type = f[UNIT_TYPE];
            current.id = f[UNIT_ID];
        }
        rows++;
        if (thumbnail) {
            current.thumbs++;
            if (found) current.thumb_bytes += st.st_size;
        } else {
            double mtime = seconds(st.st_mtim), atime = seconds(st.st_atim);
            current.files++;
            current.unhashed += is_null(f[DIGEST]);
            current.symlinks += link;
            current.pyramids += equals(f[KIND], "pyramid") || equals(f[KIND], "pyramid_lock");
            current.bytes += st.st_size;
            row_bytes += st.st_size;
            if (!current.found || mtime > current.newest) current.newest = mtime;
            if (!current.found || atime > current.accessed) current.accessed = atime;
            current.found = 1;
        }
        p = next;
        continue;
    hand_back:
        {
            PyObject *line = PyBytes_FromStringAndSize(p, next - p);
            if (line == NULL || PyList_Append(rest, line) < 0) {
                Py_XDECREF(line);
                goto done;
            }
            Py_DECREF(line);
        }
        p = next;
    }
    if (emit(runs, &current) < 0) goto done;
    result = Py_BuildValue("(OOLL)", runs, rest, rows, row_bytes);
done:
    if (fd >= 0) close(fd);
    Py_XDECREF(runs);
    Py_XDECREF(rest);
    PyBuffer_Release(&block);
    return result;
}

static PyMethodDef methods[] = {
    {"stat_rows", stat_rows, METH_VARARGS,
     "stat_rows(block, end, managed, data) -> (runs, rest, rows, row_bytes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_statrows",
    .m_doc = "The common case of a stat scan's per-file loop, in C (engine/statworker.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__statrows(void) { return PyModule_Create(&module); }
