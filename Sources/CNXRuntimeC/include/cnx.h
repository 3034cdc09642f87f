// The C API of the convnext-convert runtime: open a `.cnx` model, describe its inputs and
// outputs, run it on float32 buffers the caller owns, read its metadata.
//
// Built as the shared library `libcnxruntime` (SwiftPM product `cnxruntime`):
//     swift build -c release --product cnxruntime
//     cc app.c -I Sources/CNXRuntimeC/include -L .build/release -lcnxruntime
//        -Wl,-rpath,$PWD/.build/release     (one line)
//
// Conventions
//   - Every function that can fail returns a cnx_status; CNX_OK (0) is success. On failure the
//     out-parameters are left unchanged, and cnx_last_error() returns a one-line message naming
//     the file, argument or tensor at fault. Bad input (a missing or corrupt file, a NULL
//     pointer, a buffer of the wrong size, a shape the model does not take) is an error, never a
//     crash.
//   - Thread safety: a cnx_model is immutable once open. Any number of threads may call
//     cnx_model_run and the describing functions on the same model at once (each run uses
//     `threads` worker threads of its own). Opening and closing are not synchronised with runs:
//     close a model only when no call on it is in flight.
//   - Strings returned by the library are UTF-8, NUL-terminated and owned by the model (valid
//     until cnx_model_close) or, for cnx_last_error, by the calling thread.
//   - Arrays are row-major (C order); images are NCHW float32, preprocessed as the model's
//     metadata says (cnx_model_preprocessing).
#ifndef CNX_H
#define CNX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CNX_API_VERSION 1

/// The most dimensions an input or output has (shape arrays of this length always suffice).
#define CNX_MAX_RANK 8

typedef enum {
    CNX_OK = 0,
    CNX_ERROR_INVALID_ARGUMENT = 1,  // a NULL pointer, an index out of range, a bad thread count
    CNX_ERROR_FILE = 2,              // the file is missing or cannot be read
    CNX_ERROR_FORMAT = 3,            // not a valid .cnx (corrupt, truncated, unsupported)
    CNX_ERROR_SHAPE = 4,             // an input shape the model does not take, or a buffer whose
                                     // element count does not match its shape
    CNX_ERROR_BUFFER_TOO_SMALL = 5,  // an output (or string) buffer too small: the needed size is
                                     // still reported (output shape, length)
    CNX_ERROR_NOT_FOUND = 6,         // a metadata key the model does not have
    CNX_ERROR_RUNTIME = 7,           // anything else that went wrong while running
} cnx_status;

/// An open model (opaque).
typedef struct cnx_model cnx_model;

/// "CNX_OK", "CNX_ERROR_FILE", ... ("unknown status" otherwise). Never NULL.
const char *cnx_status_name(cnx_status status);

/// The message of the last call that failed on this thread ("" if none has). Never NULL; valid
/// until the next failing call on this thread.
const char *cnx_last_error(void);

/// The API version the library implements (CNX_API_VERSION of its header).
int cnx_api_version(void);

// MARK: - Opening

/// Opens a .cnx file: reads and checks it (checksums, graph), packs the weights for the kernels.
/// threads: worker threads each run uses; 0 means one per core. On success *model is set; close
/// it with cnx_model_close.
cnx_status cnx_model_open(const char *path, int threads, cnx_model **model);

/// Releases a model (NULL is allowed and ignored).
void cnx_model_close(cnx_model *model);

/// Worker threads each run of this model uses.
cnx_status cnx_model_threads(const cnx_model *model, int *threads);

// MARK: - Inputs and outputs

cnx_status cnx_model_input_count(const cnx_model *model, int64_t *count);
cnx_status cnx_model_output_count(const cnx_model *model, int64_t *count);

/// The name of input / output `index` (0-based).
cnx_status cnx_model_input_name(const cnx_model *model, int64_t index, const char **name);
cnx_status cnx_model_output_name(const cnx_model *model, int64_t index, const char **name);

/// The declared shape of input / output `index`: *rank dimensions into dims (CNX_MAX_RANK
/// entries always suffice; `capacity` is the length of dims), -1 for a dimension the model
/// leaves open (the batch, and for fully convolutional models the height and width). *rank is -1
/// when the file does not declare the shape. CNX_ERROR_BUFFER_TOO_SMALL, with *rank set, when
/// capacity < rank.
cnx_status cnx_model_input_shape(const cnx_model *model, int64_t index, int64_t *dims, int64_t capacity,
                                 int64_t *rank);
cnx_status cnx_model_output_shape(const cnx_model *model, int64_t index, int64_t *dims, int64_t capacity,
                                  int64_t *rank);

// MARK: - Running

/// One output buffer of a run: the caller owns `data` (capacity floats); the run writes the
/// output there and its shape into shape[0 .. rank).
typedef struct {
    float *data;
    int64_t capacity;                 // floats available at data
    int64_t shape[CNX_MAX_RANK];      // set by the run
    int64_t rank;                     // set by the run
} cnx_output;

/// Runs the model on one float32 input of `input_count` elements with the given shape (for an
/// image model: N x 3 x H x W, H and W multiples of 32) and writes every output, in the order of
/// cnx_model_output_name, into outputs[0 .. output_count). output_count must equal the model's
/// output count. If an output buffer is too small the run returns CNX_ERROR_BUFFER_TOO_SMALL
/// with the shapes set, so the caller can size the buffers and run again. The results are the
/// same bits as the Swift `Model.predictAll` (and `convnext-convert run`) with the same thread
/// count.
cnx_status cnx_model_run(cnx_model *model, const float *input, int64_t input_count, const int64_t *input_shape,
                         int64_t input_rank, cnx_output *outputs, int64_t output_count);

/// The common case of one output: cnx_model_run with a single cnx_output. output_shape (at
/// least CNX_MAX_RANK entries) and output_rank may be NULL.
cnx_status cnx_model_run1(cnx_model *model, const float *input, int64_t input_count, const int64_t *input_shape,
                          int64_t input_rank, float *output, int64_t output_capacity, int64_t *output_shape,
                          int64_t *output_rank);

// MARK: - Metadata

/// The class names the file records (general.class_names): *count of them (0 when the file has
/// none; then callers number the classes).
cnx_status cnx_model_class_count(const cnx_model *model, int64_t *count);
cnx_status cnx_model_class_name(const cnx_model *model, int64_t index, const char **name);

/// Which values of cnx_preprocessing the file states (the others hold the ImageNet defaults the
/// command-line tool also uses: 224 x 224, crop_pct 0.875, bicubic, ImageNet mean and std).
enum {
    CNX_PREPROCESS_SIZE = 1u << 0,
    CNX_PREPROCESS_CROP_PCT = 1u << 1,
    CNX_PREPROCESS_INTERPOLATION = 1u << 2,
    CNX_PREPROCESS_MEAN = 1u << 3,
    CNX_PREPROCESS_STD = 1u << 4,
};

/// How an image becomes the model's input: resize (shorter side to size / crop_pct, with the
/// interpolation), centre crop to height x width, scale to [0, 1], subtract mean and divide by
/// std per channel (RGB).
typedef struct {
    int64_t height, width;
    double crop_pct;
    char interpolation[16];  // "bicubic" or "bilinear"
    float mean[3];
    float std[3];
    uint32_t stated;         // CNX_PREPROCESS_* bits of the values the file states
} cnx_preprocessing;

cnx_status cnx_model_preprocessing(const cnx_model *model, cnx_preprocessing *preprocessing);

/// A metadata value as text: a string as it is, numbers and lists as compact JSON
/// (`[0.485,0.456,0.406]`, floats as the decimals they were written as). CNX_ERROR_NOT_FOUND when
/// the key is absent.
cnx_status cnx_model_metadata(const cnx_model *model, const char *key, const char **value);

/// Every metadata entry as one compact JSON object (keys sorted).
cnx_status cnx_model_metadata_json(const cnx_model *model, const char **json);

#ifdef __cplusplus
}
#endif
#endif
