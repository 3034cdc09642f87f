// The parts of the C API that are plain C: status names and the per-thread last error. The rest
// is Swift (Sources/CNXCAPI), exported with @_cdecl.
#include "cnx.h"
#include "cnx_capi_internal.h"

#include <string.h>

#define CNX_ERROR_CAPACITY 2048

static _Thread_local char last_error[CNX_ERROR_CAPACITY];

cnx_status cnx_capi_fail(cnx_status status, const char *message) {
    if (message == NULL) message = "";
    size_t n = strlen(message);
    if (n >= CNX_ERROR_CAPACITY) {
        // Cut at a UTF-8 character boundary, leaving room for "...".
        n = CNX_ERROR_CAPACITY - 4;
        while (n > 0 && ((unsigned char)message[n] & 0xC0) == 0x80) n--;
        memcpy(last_error, message, n);
        memcpy(last_error + n, "...", 4);
    } else {
        memcpy(last_error, message, n + 1);
    }
    return status;
}

const char *cnx_last_error(void) { return last_error; }

int cnx_api_version(void) { return CNX_API_VERSION; }

const char *cnx_status_name(cnx_status status) {
    switch (status) {
    case CNX_OK: return "CNX_OK";
    case CNX_ERROR_INVALID_ARGUMENT: return "CNX_ERROR_INVALID_ARGUMENT";
    case CNX_ERROR_FILE: return "CNX_ERROR_FILE";
    case CNX_ERROR_FORMAT: return "CNX_ERROR_FORMAT";
    case CNX_ERROR_SHAPE: return "CNX_ERROR_SHAPE";
    case CNX_ERROR_BUFFER_TOO_SMALL: return "CNX_ERROR_BUFFER_TOO_SMALL";
    case CNX_ERROR_NOT_FOUND: return "CNX_ERROR_NOT_FOUND";
    case CNX_ERROR_RUNTIME: return "CNX_ERROR_RUNTIME";
    }
    return "unknown status";
}
