// For the library's own Swift implementation (Sources/CNXCAPI) only: not part of the C API.
#ifndef CNX_CAPI_INTERNAL_H
#define CNX_CAPI_INTERNAL_H

#include "cnx.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Records `message` as this thread's cnx_last_error() and returns `status`.
cnx_status cnx_capi_fail(cnx_status status, const char *message);

#ifdef __cplusplus
}
#endif
#endif
