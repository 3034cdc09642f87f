#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

/* JPEG decoding for CNXValidate, in C because libjpeg reports a fatal error by calling
 * `error_exit`, which must not return: it longjmps back to `cnx_jpeg_decode_rgb`, so the jump
 * crosses only C frames (libjpeg's and this function's), never Swift ones. */

typedef struct cnx_jpeg_error_manager {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char message[JMSG_LENGTH_MAX];
} cnx_jpeg_error_manager;

static void cnx_jpeg_error_exit(j_common_ptr cinfo) {
    cnx_jpeg_error_manager *err = (cnx_jpeg_error_manager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Warnings (corrupt-data notes that libjpeg recovers from) are ignored, as PIL ignores them,
 * except the end of the data arriving early: PIL refuses a truncated file, and so do we. */
static void cnx_jpeg_emit_message(j_common_ptr cinfo, int level) {
    cnx_jpeg_error_manager *err = (cnx_jpeg_error_manager *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        err->truncated = 1;
    }
}

/* PIL's CMYK to RGB (Convert.c, cmyk2rgb): nk = 255 - k; c' = nk - round(c * nk / 255). */
static inline unsigned char cnx_cmyk_channel(int c, int nk) {
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Decodes the JPEG in `data` to 8-bit RGB, row-major, 3 bytes a pixel, in memory from malloc
 * (the caller frees `*pixels`). Greyscale is repeated on three channels; CMYK and YCCK are
 * converted as PIL converts them (Adobe's inverted CMYK included). libjpeg's defaults are kept
 * (accurate integer DCT, fancy upsampling), as PIL keeps them.
 * Returns 0, or -1 with a message in `message`. */
static inline int cnx_jpeg_decode_rgb(const unsigned char *data, unsigned long size,
                                      unsigned char **pixels, int *width, int *height,
                                      char *message, size_t message_size) {
    struct jpeg_decompress_struct cinfo;
    cnx_jpeg_error_manager err;
    unsigned char *volatile out = NULL;
    unsigned char *volatile row = NULL;
    *pixels = NULL;
    *width = 0;
    *height = 0;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = cnx_jpeg_error_exit;
    err.pub.emit_message = cnx_jpeg_emit_message;
    if (setjmp(err.jump)) {
        snprintf(message, message_size, "%s", err.message);
        jpeg_destroy_decompress(&cinfo);
        free(out);
        free(row);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    int inverted = cmyk && cinfo.saw_Adobe_marker;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    int channels = cinfo.output_components;
    if ((cmyk && channels != 4) || (!cmyk && channels != 3)) {
        snprintf(message, message_size, "unexpected %d output components", channels);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    out = (unsigned char *)malloc(w * h * 3 + 1);
    row = (unsigned char *)malloc(w * (size_t)channels + 1);
    if (out == NULL || row == NULL) {
        snprintf(message, message_size, "out of memory for %zux%zu pixels", w, h);
        jpeg_destroy_decompress(&cinfo);
        free(out);
        free(row);
        return -1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        size_t y = cinfo.output_scanline;
        if (!cmyk) {
            JSAMPROW target = out + y * w * 3;
            jpeg_read_scanlines(&cinfo, &target, 1);
            continue;
        }
        JSAMPROW target = row;
        jpeg_read_scanlines(&cinfo, &target, 1);
        unsigned char *dst = out + y * w * 3;
        for (size_t x = 0; x < w; x++) {
            int c = row[4 * x], m = row[4 * x + 1], yy = row[4 * x + 2], k = row[4 * x + 3];
            if (inverted) { c = 255 - c; m = 255 - m; yy = 255 - yy; k = 255 - k; }
            int nk = 255 - k;
            dst[3 * x] = cnx_cmyk_channel(c, nk);
            dst[3 * x + 1] = cnx_cmyk_channel(m, nk);
            dst[3 * x + 2] = cnx_cmyk_channel(yy, nk);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    if (err.truncated) {
        snprintf(message, message_size, "truncated: the JPEG data ends before the image does");
        free(out);
        return -1;
    }
    *pixels = out;
    *width = (int)w;
    *height = (int)h;
    return 0;
}

/* Encodes 8-bit RGB pixels (row-major, 3 bytes a pixel) as a baseline JPEG of the given quality
 * (1-100), into memory from malloc (the caller frees `*out`). For the thumbnails of the HTML
 * report. Returns 0, or -1 with a message in `message`. */
static inline int cnx_jpeg_encode_rgb(const unsigned char *pixels, int width, int height, int quality,
                                      unsigned char **out, unsigned long *size,
                                      char *message, size_t message_size) {
    struct jpeg_compress_struct cinfo;
    cnx_jpeg_error_manager err;
    unsigned char *volatile buffer = NULL;
    unsigned long volatile length = 0;
    *out = NULL;
    *size = 0;
    if (width <= 0 || height <= 0 || width > 65500 || height > 65500) {
        snprintf(message, message_size, "cannot encode a %dx%d image", width, height);
        return -1;
    }
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = cnx_jpeg_error_exit;
    if (setjmp(err.jump)) {
        snprintf(message, message_size, "%s", err.message);
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&buffer, (unsigned long *)&length);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = buffer;
    *size = length;
    return 0;
}
