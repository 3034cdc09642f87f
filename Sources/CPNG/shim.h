#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <png.h>

/* PNG decoding for CNXValidate, in C because libpng reports an error by longjmp-ing to the
 * caller's `setjmp`: the jump stays inside C frames (libpng's and `cnx_png_decode_rgb`). */

typedef struct cnx_png_source {
    const unsigned char *data;
    size_t size;
    size_t offset;
    char message[200];
} cnx_png_source;

static void cnx_png_error(png_structp png, png_const_charp text) {
    cnx_png_source *src = (cnx_png_source *)png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", text);
    png_longjmp(png, 1);
}

static void cnx_png_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void cnx_png_read(png_structp png, png_bytep target, png_size_t count) {
    cnx_png_source *src = (cnx_png_source *)png_get_io_ptr(png);
    if (count > src->size - src->offset) {
        png_error(png, "truncated: the PNG data ends before the image does");
    }
    memcpy(target, src->data + src->offset, count);
    src->offset += count;
}

/* Decodes the PNG in `data` to 8-bit RGB, row-major, 3 bytes a pixel, in memory from malloc
 * (the caller frees `*pixels`), as PIL's `convert("RGB")` gives it: palettes looked up, grey
 * repeated on three channels, alpha (and tRNS) dropped, no gamma correction; 16-bit samples keep
 * their high byte. Interlaced images are de-interlaced.
 * Returns 0, or -1 with a message in `message`. */
static inline int cnx_png_decode_rgb(const unsigned char *data, size_t size,
                                     unsigned char **pixels, int *width, int *height,
                                     char *message, size_t message_size) {
    cnx_png_source src;
    png_structp png = NULL;
    png_infop info = NULL;
    unsigned char *volatile raw = NULL;
    unsigned char *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    *pixels = NULL;
    *width = 0;
    *height = 0;
    memset(&src, 0, sizeof src);
    src.data = data;
    src.size = size;
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, cnx_png_error, cnx_png_warning);
    if (png == NULL) {
        snprintf(message, message_size, "cannot create a PNG reader");
        return -1;
    }
    info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(message, message_size, "cannot create a PNG reader");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        snprintf(message, message_size, "%s", src.message);
        png_destroy_read_struct(&png, &info, NULL);
        free(raw);
        free(out);
        free(rows);
        return -1;
    }
    png_set_read_fn(png, &src, cnx_png_read);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || channels < 1 || channels > 4 || rowbytes != (size_t)w * channels) {
        png_error(png, "unsupported PNG layout after expansion");
    }
    raw = (unsigned char *)malloc(rowbytes * h + 1);
    out = (unsigned char *)malloc((size_t)w * h * 3 + 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * h + 1);
    if (raw == NULL || out == NULL || rows == NULL) {
        png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = raw + i * channels;
        unsigned char *q = out + 3 * i;
        if (channels >= 3) {
            q[0] = p[0]; q[1] = p[1]; q[2] = p[2];
        } else {
            q[0] = q[1] = q[2] = p[0];
        }
    }
    free(raw);
    free(rows);
    *pixels = out;
    *width = (int)w;
    *height = (int)h;
    return 0;
}
