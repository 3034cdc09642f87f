// Bad input through the C API returns a status and a message, never a crash; and concurrent runs
// on one model give the same bits as one at a time. Run by Tests/CAPITests with a good .cnx (a
// 3 x 32 x 32 classifier: the converted digits model) and a scratch folder:
//     capi_test GOOD.cnx SCRATCH_DIR
// Prints a line per failed check and `N passed, N failed`; exits 1 on failure.
#include "cnx.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *fmt, ...) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

// The call returned `want` and left a message (for errors) that names `needle`.
static void expect(cnx_status got, cnx_status want, const char *needle, const char *what) {
    const char *msg = cnx_last_error();
    const int msg_ok = want == CNX_OK || (msg[0] != 0 && (!needle || strstr(msg, needle)));
    check(got == want && msg_ok, "%s: got %s (%s), want %s%s%s", what, cnx_status_name(got), msg, cnx_status_name(want),
          needle ? " naming " : "", needle ? needle : "");
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*size + 1);
    if (fread(b, 1, *size, f) != *size) *size = 0;
    fclose(f);
    return b;
}

static void write_file(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

// MARK: - Concurrency

typedef struct {
    cnx_model *model;
    const float *x;
    int64_t count;
    const int64_t *shape;
    float *y;
    int64_t capacity;
    int repeat;
    cnx_status status;
} job;

static void *run_job(void *p) {
    job *j = p;
    for (int r = 0; r < j->repeat && j->status == CNX_OK; r++)
        j->status = cnx_model_run1(j->model, j->x, j->count, j->shape, 4, j->y, j->capacity, NULL, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: capi_test GOOD.cnx SCRATCH_DIR\n");
        return 2;
    }
    const char *good = argv[1], *dir = argv[2];
    char path[4096];

    check(cnx_api_version() == CNX_API_VERSION, "api version");
    check(strcmp(cnx_status_name(CNX_ERROR_SHAPE), "CNX_ERROR_SHAPE") == 0, "status names");
    check(strcmp(cnx_status_name((cnx_status)99), "unknown status") == 0, "unknown status name");
    check(cnx_last_error()[0] == 0, "no error yet on this thread");

    // Opening: NULLs, missing files, folders, corrupt files.
    cnx_model *m = NULL;
    expect(cnx_model_open(NULL, 1, &m), CNX_ERROR_INVALID_ARGUMENT, "path", "open(NULL path)");
    expect(cnx_model_open(good, 1, NULL), CNX_ERROR_INVALID_ARGUMENT, "model", "open(NULL out)");
    expect(cnx_model_open(good, -3, &m), CNX_ERROR_INVALID_ARGUMENT, "threads", "open(threads -3)");
    snprintf(path, sizeof path, "%s/does-not-exist.cnx", dir);
    expect(cnx_model_open(path, 1, &m), CNX_ERROR_FILE, "does-not-exist.cnx", "open(missing file)");
    expect(cnx_model_open(dir, 1, &m), CNX_ERROR_FILE, "folder", "open(a folder)");
    check(m == NULL, "failed opens leave *model alone");

    size_t size = 0;
    unsigned char *bytes = read_file(good, &size);
    check(bytes != NULL && size > 1024, "read %s", good);
    if (!bytes || size <= 1024) goto summary;
    struct {
        const char *name;
        size_t length;
        long flip;  // byte to invert, or -1
        const char *needle;
    } corrupt[] = {
        {"empty.cnx", 0, -1, "empty.cnx"},
        {"magic-only.cnx", 4, -1, "magic-only.cnx"},
        {"half.cnx", 0, -1, "truncated"},
        {"flipped-data.cnx", 0, 0, "checksum"},
        {"flipped-header.cnx", 0, 40, "checksum"},
        {"garbage.cnx", 0, -2, "not a .cnx file"},
    };
    corrupt[2].length = size / 2;
    corrupt[3].length = size;
    corrupt[3].flip = (long)size - 100;  // inside the last tensor's data
    corrupt[4].length = size;
    corrupt[5].length = 4096;
    for (size_t c = 0; c < sizeof corrupt / sizeof corrupt[0]; c++) {
        unsigned char *b = malloc(size > 4096 ? size : 4096);
        memcpy(b, bytes, size);
        if (corrupt[c].flip >= 0) b[corrupt[c].flip] ^= 0xFF;
        if (corrupt[c].flip == -2)
            for (size_t i = 0; i < corrupt[c].length; i++) b[i] = (unsigned char)(i * 2654435761u >> 13);
        snprintf(path, sizeof path, "%s/%s", dir, corrupt[c].name);
        write_file(path, b, corrupt[c].length);
        free(b);
        char what[128];
        snprintf(what, sizeof what, "open(%s)", corrupt[c].name);
        m = NULL;
        expect(cnx_model_open(path, 1, &m), CNX_ERROR_FORMAT, corrupt[c].needle, what);
        check(m == NULL, "%s leaves *model alone", what);
        if (m) cnx_model_close(m);
    }
    free(bytes);
    cnx_model_close(NULL);  // allowed

    // A good model: describing functions with bad arguments.
    m = NULL;
    expect(cnx_model_open(good, 2, &m), CNX_OK, NULL, "open(good)");
    if (!m) goto summary;
    int threads = 0;
    expect(cnx_model_threads(m, &threads), CNX_OK, NULL, "threads");
    check(threads == 2, "threads = %d", threads);
    int64_t count = -1, rank = -1, dims[CNX_MAX_RANK];
    const char *name = NULL;
    expect(cnx_model_input_count(NULL, &count), CNX_ERROR_INVALID_ARGUMENT, "model is NULL", "input_count(NULL model)");
    expect(cnx_model_input_count(m, NULL), CNX_ERROR_INVALID_ARGUMENT, "count", "input_count(NULL out)");
    expect(cnx_model_input_count(m, &count), CNX_OK, NULL, "input_count");
    check(count == 1, "one input (%lld)", (long long)count);
    expect(cnx_model_input_name(m, 1, &name), CNX_ERROR_INVALID_ARGUMENT, "out of range", "input_name(1)");
    expect(cnx_model_output_name(m, -1, &name), CNX_ERROR_INVALID_ARGUMENT, "out of range", "output_name(-1)");
    expect(cnx_model_input_shape(m, 0, dims, 2, &rank), CNX_ERROR_BUFFER_TOO_SMALL, "dims holds 2", "input_shape(capacity 2)");
    check(rank == 4, "the needed rank is still reported (%lld)", (long long)rank);
    expect(cnx_model_input_shape(m, 0, dims, CNX_MAX_RANK, &rank), CNX_OK, NULL, "input_shape");
    check(rank == 4 && dims[0] == -1 && dims[1] == 3 && dims[2] == 32 && dims[3] == 32, "input shape [-1, 3, 32, 32]");
    expect(cnx_model_output_shape(m, 0, dims, CNX_MAX_RANK, &rank), CNX_OK, NULL, "output_shape");
    check(rank == 2 && dims[0] == -1 && dims[1] == 10, "output shape [-1, 10]");
    expect(cnx_model_class_name(m, 0, &name), CNX_ERROR_INVALID_ARGUMENT, "out of range", "class_name(0) without names");
    const char *value = NULL;
    expect(cnx_model_metadata(m, "no.such.key", &value), CNX_ERROR_NOT_FOUND, "no.such.key", "metadata(missing key)");
    expect(cnx_model_metadata(m, NULL, &value), CNX_ERROR_INVALID_ARGUMENT, "key", "metadata(NULL key)");
    expect(cnx_model_metadata(m, "input.size", &value), CNX_OK, NULL, "metadata(input.size)");
    check(value && strcmp(value, "[32,32]") == 0, "input.size as JSON: %s", value ? value : "(null)");
    expect(cnx_model_metadata(m, "general.architecture", &value), CNX_OK, NULL, "metadata(general.architecture)");
    check(value && strcmp(value, "convnext") == 0, "a string as it is: %s", value ? value : "(null)");
    expect(cnx_model_metadata_json(m, &value), CNX_OK, NULL, "metadata_json");
    check(value && value[0] == '{' && strstr(value, "\"input.size\":[32,32]"), "metadata JSON");
    cnx_preprocessing p;
    expect(cnx_model_preprocessing(m, NULL), CNX_ERROR_INVALID_ARGUMENT, "preprocessing", "preprocessing(NULL)");
    expect(cnx_model_preprocessing(m, &p), CNX_OK, NULL, "preprocessing");
    check(p.height == 32 && p.width == 32 && p.stated == CNX_PREPROCESS_SIZE && strcmp(p.interpolation, "bicubic") == 0,
          "preprocessing: the stated size, defaults elsewhere");

    // Running with bad buffers and shapes.
    const int64_t shape[4] = {3, 3, 32, 32};
    const int64_t n = 3 * 3 * 32 * 32;
    float *x = malloc(n * sizeof(float));
    uint64_t seed = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        x[i] = (float)(seed >> 40) / (float)(1 << 24) * 4.0f - 2.0f;
    }
    float y[30], y2[30];
    int64_t yshape[CNX_MAX_RANK], yrank = -1;
    expect(cnx_model_run1(m, NULL, n, shape, 4, y, 30, NULL, NULL), CNX_ERROR_INVALID_ARGUMENT, "input is NULL", "run(NULL input)");
    expect(cnx_model_run1(m, x, n, NULL, 4, y, 30, NULL, NULL), CNX_ERROR_INVALID_ARGUMENT, "input_shape", "run(NULL shape)");
    expect(cnx_model_run1(m, x, n, shape, 4, NULL, 30, NULL, NULL), CNX_ERROR_INVALID_ARGUMENT, "output", "run(NULL output)");
    expect(cnx_model_run1(NULL, x, n, shape, 4, y, 30, NULL, NULL), CNX_ERROR_INVALID_ARGUMENT, "model", "run(NULL model)");
    expect(cnx_model_run1(m, x, n - 1, shape, 4, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "input_count", "run(input_count one short)");
    expect(cnx_model_run1(m, x, n, shape, 0, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "input_rank", "run(rank 0)");
    expect(cnx_model_run1(m, x, n, shape, 99, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "input_rank", "run(rank 99)");
    const int64_t bad_channels[4] = {3, 4, 32, 24};
    expect(cnx_model_run1(m, x, n, bad_channels, 4, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "shape", "run(4 channels)");
    const int64_t bad_size[4] = {3, 3, 16, 64};
    expect(cnx_model_run1(m, x, n, bad_size, 4, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "shape", "run(16 x 64)");
    const int64_t rank3[3] = {9, 32, 32};
    expect(cnx_model_run1(m, x, n, rank3, 3, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "shape", "run(rank 3)");
    const int64_t zero[4] = {0, 3, 32, 32};
    expect(cnx_model_run1(m, x, 0, zero, 4, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "dimension 0", "run(batch 0)");
    const int64_t negative[4] = {-3, 3, 32, 32};
    expect(cnx_model_run1(m, x, n, negative, 4, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "dimension 0", "run(batch -3)");
    const int64_t huge[4] = {1ll << 30, 1ll << 30, 1ll << 30, 1ll << 30};
    expect(cnx_model_run1(m, x, n, huge, 4, y, 30, NULL, NULL), CNX_ERROR_SHAPE, "too large", "run(huge shape)");
    expect(cnx_model_run1(m, x, n, shape, 4, y, 29, yshape, &yrank), CNX_ERROR_BUFFER_TOO_SMALL, "needs 30 floats", "run(capacity 29)");
    check(yrank == 2 && yshape[0] == 3 && yshape[1] == 10, "a too-small buffer still gets the shape");
    expect(cnx_model_run1(m, x, n, shape, 4, y, -1, NULL, NULL), CNX_ERROR_INVALID_ARGUMENT, "output_capacity", "run(capacity -1)");
    cnx_output outs[2];
    memset(outs, 0, sizeof outs);
    outs[0].data = y;
    outs[0].capacity = 30;
    expect(cnx_model_run(m, x, n, shape, 4, outs, 2), CNX_ERROR_INVALID_ARGUMENT, "output_count", "run(2 outputs)");
    expect(cnx_model_run(m, x, n, shape, 4, NULL, 1), CNX_ERROR_INVALID_ARGUMENT, "outputs", "run(NULL outputs)");
    outs[0].data = NULL;
    expect(cnx_model_run(m, x, n, shape, 4, outs, 1), CNX_ERROR_INVALID_ARGUMENT, "data is NULL", "run(NULL data)");

    // Good runs: the two entry points agree, and the error state is per thread.
    expect(cnx_model_run1(m, x, n, shape, 4, y, 30, yshape, &yrank), CNX_OK, NULL, "run1");
    check(yrank == 2 && yshape[0] == 3 && yshape[1] == 10, "run1 shape");
    outs[0].data = y2;
    outs[0].capacity = 30;
    expect(cnx_model_run(m, x, n, shape, 4, outs, 1), CNX_OK, NULL, "run");
    check(memcmp(y, y2, sizeof y) == 0 && outs[0].rank == 2 && outs[0].shape[1] == 10, "run == run1, bit for bit");
    int finite = 1;
    for (int i = 0; i < 30; i++) finite &= y[i] == y[i] && y[i] > -1e6f && y[i] < 1e6f;
    check(finite, "finite logits");

    // Eight threads, each running the same batch many times on the one model.
    enum { T = 8 };
    pthread_t tid[T];
    job jobs[T];
    float ys[T][30];
    for (int t = 0; t < T; t++) {
        jobs[t] = (job){m, x, n, shape, ys[t], 30, 25, CNX_OK};
        pthread_create(&tid[t], NULL, run_job, &jobs[t]);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(tid[t], NULL);
        check(jobs[t].status == CNX_OK && memcmp(ys[t], y, sizeof y) == 0, "thread %d: status %s, same bits", t,
              cnx_status_name(jobs[t].status));
    }
    free(x);
    cnx_model_close(m);

summary:
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
