// Runs a .cnx model from C through libcnxruntime (include: Sources/CNXRuntimeC/include/cnx.h):
// describes the model, reads a float32 NCHW batch from a .npy file, runs it, prints the top
// classes of each image and writes the output (the logits) as .npy.
//
//   swift build -c release --product cnxruntime
//   cc -O2 examples/c/classify.c -I Sources/CNXRuntimeC/include -L .build/release -lcnxruntime
//      -Wl,-rpath,"$PWD/.build/release" -o classify     (one line)
//   ./classify model.cnx batch.npy --threads 2 --top 3 --output logits.npy
//
// The .npy reader takes what numpy.save writes for a C-ordered float32 array (format 1.0-3.0).
#include "cnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "classify: %s\n", what);
    return 1;
}

static int api_fail(cnx_status status) {
    fprintf(stderr, "classify: %s: %s\n", cnx_status_name(status), cnx_last_error());
    return 1;
}

// MARK: - .npy

typedef struct {
    float *data;
    int64_t count;
    int64_t shape[CNX_MAX_RANK];
    int64_t rank;
} array;

static int read_npy(const char *path, array *out, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return 0;
    }
    unsigned char pre[10];
    int ok = 0;
    char *header = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        snprintf(err, errlen, "%s: not a .npy file", path);
        goto done;
    }
    size_t hlen;
    if (pre[6] == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
    } else {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) goto truncated;
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)more[0] << 16 | (size_t)more[1] << 24;
    }
    header = calloc(hlen + 1, 1);
    if (!header || fread(header, 1, hlen, f) != hlen) goto truncated;
    if (!strstr(header, "'descr': '<f4'") || !strstr(header, "'fortran_order': False")) {
        snprintf(err, errlen, "%s: not a C-ordered little-endian float32 array", path);
        goto done;
    }
    const char *s = strstr(header, "'shape': (");
    if (!s) goto truncated;
    s += strlen("'shape': (");
    out->rank = 0;
    out->count = 1;
    while (*s && *s != ')') {
        char *end;
        long long d = strtoll(s, &end, 10);
        if (end == s) break;
        if (out->rank == CNX_MAX_RANK || d < 0) {
            snprintf(err, errlen, "%s: unsupported shape", path);
            goto done;
        }
        out->shape[out->rank++] = d;
        out->count *= d;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    out->data = malloc((size_t)(out->count ? out->count : 1) * sizeof(float));
    if (!out->data || fread(out->data, sizeof(float), (size_t)out->count, f) != (size_t)out->count) goto truncated;
    ok = 1;
    goto done;
truncated:
    snprintf(err, errlen, "%s: truncated or unreadable .npy", path);
done:
    free(header);
    fclose(f);
    return ok;
}

static int write_npy(const char *path, const float *data, const int64_t *shape, int64_t rank) {
    char dims[256] = "";
    size_t used = 0;
    int64_t count = 1;
    for (int64_t i = 0; i < rank; i++) {
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld%s", (long long)shape[i], rank == 1 ? "," : i + 1 < rank ? ", " : "");
        count *= shape[i];
    }
    char header[512];
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    // Pad with spaces so that magic + length + header + newline is a multiple of 64.
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((n + pad + 1) & 0xFF), (unsigned char)((n + pad + 1) >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(header, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t written = fwrite(data, sizeof(float), (size_t)count, f);
    return fclose(f) == 0 && written == (size_t)count;
}

// MARK: - Model description

static void print_shape(const int64_t *dims, int64_t rank) {
    if (rank < 0) {
        printf("(undeclared)");
        return;
    }
    printf("[");
    for (int64_t i = 0; i < rank; i++) {
        if (dims[i] < 0) printf("%s?", i ? ", " : "");
        else printf("%s%lld", i ? ", " : "", (long long)dims[i]);
    }
    printf("]");
}

static int describe(cnx_model *model) {
    int64_t n_in, n_out, rank, dims[CNX_MAX_RANK];
    cnx_status st;
    if ((st = cnx_model_input_count(model, &n_in)) || (st = cnx_model_output_count(model, &n_out))) return api_fail(st);
    for (int64_t i = 0; i < n_in + n_out; i++) {
        const int is_in = i < n_in;
        const int64_t k = is_in ? i : i - n_in;
        const char *name;
        st = is_in ? cnx_model_input_name(model, k, &name) : cnx_model_output_name(model, k, &name);
        if (!st) st = is_in ? cnx_model_input_shape(model, k, dims, CNX_MAX_RANK, &rank) : cnx_model_output_shape(model, k, dims, CNX_MAX_RANK, &rank);
        if (st) return api_fail(st);
        printf("%s %s: float32 ", is_in ? "input" : "output", name);
        print_shape(dims, rank);
        printf("\n");
    }
    cnx_preprocessing p;
    if ((st = cnx_model_preprocessing(model, &p))) return api_fail(st);
    printf("preprocessing: %lldx%lld, crop_pct %g, %s, mean [%g, %g, %g], std [%g, %g, %g]%s\n", (long long)p.height,
           (long long)p.width, p.crop_pct, p.interpolation, p.mean[0], p.mean[1], p.mean[2], p.std[0], p.std[1], p.std[2],
           p.stated == 0 ? " (defaults: the file states none)" : "");
    int64_t classes;
    if ((st = cnx_model_class_count(model, &classes))) return api_fail(st);
    printf("class names: %lld\n", (long long)classes);
    return 0;
}

// MARK: - Main

int main(int argc, char **argv) {
    const char *model_path = NULL, *input_path = NULL, *output_path = NULL;
    int threads = 0, top = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--top") == 0 && i + 1 < argc) top = atoi(argv[++i]);
        else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) output_path = argv[++i];
        else if (!model_path) model_path = argv[i];
        else if (!input_path) input_path = argv[i];
        else return fail("usage: classify MODEL.cnx INPUT.npy [--threads N] [--top K] [--output OUT.npy]");
    }
    if (!model_path || !input_path) return fail("usage: classify MODEL.cnx INPUT.npy [--threads N] [--top K] [--output OUT.npy]");

    cnx_model *model = NULL;
    cnx_status st = cnx_model_open(model_path, threads, &model);
    if (st) return api_fail(st);
    if (describe(model)) {
        cnx_model_close(model);
        return 1;
    }

    array x;
    char err[512];
    if (!read_npy(input_path, &x, err, sizeof err)) {
        cnx_model_close(model);
        return fail(err);
    }
    // Size the output from the declared shape: the batch from the input, the rest fixed.
    int64_t dims[CNX_MAX_RANK], rank;
    if ((st = cnx_model_output_shape(model, 0, dims, CNX_MAX_RANK, &rank))) return api_fail(st);
    int64_t capacity = 1;
    for (int64_t i = 0; i < rank; i++) capacity *= dims[i] < 0 ? (i == 0 ? x.shape[0] : 1) : dims[i];
    float *y = malloc((size_t)capacity * sizeof(float));
    int64_t shape[CNX_MAX_RANK], yrank;
    st = cnx_model_run1(model, x.data, x.count, x.shape, x.rank, y, capacity, shape, &yrank);
    if (st == CNX_ERROR_BUFFER_TOO_SMALL) {
        // An open dimension other than the batch: now the shape is known.
        capacity = 1;
        for (int64_t i = 0; i < yrank; i++) capacity *= shape[i];
        free(y);
        y = malloc((size_t)capacity * sizeof(float));
        st = cnx_model_run1(model, x.data, x.count, x.shape, x.rank, y, capacity, shape, &yrank);
    }
    if (st) {
        api_fail(st);
        cnx_model_close(model);
        return 1;
    }
    printf("ran on ");
    print_shape(x.shape, x.rank);
    printf(" -> ");
    print_shape(shape, yrank);
    printf("\n");

    // Top classes of each row of a 2-D output.
    if (yrank == 2 && top > 0) {
        int64_t classes = 0;
        cnx_model_class_count(model, &classes);
        const int64_t rows = shape[0], cols = shape[1];
        for (int64_t r = 0; r < rows && r < 8; r++) {
            const float *row = y + r * cols;
            printf("image %lld:", (long long)r);
            char used[4096] = {0};
            for (int t = 0; t < top && t < cols && cols <= (int64_t)sizeof used; t++) {
                int64_t best = -1;
                for (int64_t j = 0; j < cols; j++)
                    if (!used[j] && (best < 0 || row[j] > row[best])) best = j;
                used[best] = 1;
                const char *name = NULL;
                if (best < classes) cnx_model_class_name(model, best, &name);
                if (name) printf("  %s (%lld) %.4f", name, (long long)best, row[best]);
                else printf("  class %lld %.4f", (long long)best, row[best]);
            }
            printf("\n");
        }
    }
    int rc = 0;
    if (output_path && !write_npy(output_path, y, shape, yrank)) rc = fail("cannot write the output");
    free(y);
    free(x.data);
    cnx_model_close(model);
    return rc;
}
