"""Finding and loading libcnxruntime, and the ctypes signatures of its C API (cnx.h)."""
import ctypes
import ctypes.util
import os
import sys

NAME = "libcnxruntime.dylib" if sys.platform == "darwin" else "libcnxruntime.so"
MAX_RANK = 8  # CNX_MAX_RANK

STATUS_NAMES = {
    0: "CNX_OK",
    1: "CNX_ERROR_INVALID_ARGUMENT",
    2: "CNX_ERROR_FILE",
    3: "CNX_ERROR_FORMAT",
    4: "CNX_ERROR_SHAPE",
    5: "CNX_ERROR_BUFFER_TOO_SMALL",
    6: "CNX_ERROR_NOT_FOUND",
    7: "CNX_ERROR_RUNTIME",
}
BUFFER_TOO_SMALL = 5


class Output(ctypes.Structure):
    """cnx_output."""

    _fields_ = [
        ("data", ctypes.c_void_p),  # float *: set from numpy's address directly (cheaper than a cast)
        ("capacity", ctypes.c_int64),
        ("shape", ctypes.c_int64 * MAX_RANK),
        ("rank", ctypes.c_int64),
    ]


class Preprocessing(ctypes.Structure):
    """cnx_preprocessing."""

    _fields_ = [
        ("height", ctypes.c_int64),
        ("width", ctypes.c_int64),
        ("crop_pct", ctypes.c_double),
        ("interpolation", ctypes.c_char * 16),
        ("mean", ctypes.c_float * 3),
        ("std", ctypes.c_float * 3),
        ("stated", ctypes.c_uint32),
    ]


def candidates():
    """Where the library may be, in the order tried."""
    env = os.environ.get("CNXRUNTIME_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(here, "lib", NAME)]
    checkout = os.path.normpath(os.path.join(here, os.pardir, os.pardir, ".build"))
    paths += [os.path.join(checkout, config, NAME) for config in ("release", "debug")]
    found = ctypes.util.find_library("cnxruntime")
    if found:
        paths.append(found)
    return paths


def load():
    tried = []
    for path in candidates():
        if os.path.sep in path and not os.path.isfile(path):
            tried.append(path)
            continue
        lib = ctypes.CDLL(path)
        declare(lib)
        return lib, path
    raise ImportError(
        "cnxruntime: libcnxruntime not found (tried " + ", ".join(tried or ["nothing"]) + "). Build it with "
        "`swift build -c release --product cnxruntime` and reinstall the package, or set CNXRUNTIME_LIBRARY "
        "to the library's path."
    )


def declare(lib):
    c_int64_p = ctypes.POINTER(ctypes.c_int64)
    c_char_pp = ctypes.POINTER(ctypes.c_char_p)
    model = ctypes.c_void_p
    status = ctypes.c_int
    signatures = {
        "cnx_status_name": (ctypes.c_char_p, [ctypes.c_int]),
        "cnx_last_error": (ctypes.c_char_p, []),
        "cnx_api_version": (ctypes.c_int, []),
        "cnx_model_open": (status, [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]),
        "cnx_model_close": (None, [model]),
        "cnx_model_threads": (status, [model, ctypes.POINTER(ctypes.c_int)]),
        "cnx_model_input_count": (status, [model, c_int64_p]),
        "cnx_model_output_count": (status, [model, c_int64_p]),
        "cnx_model_input_name": (status, [model, ctypes.c_int64, c_char_pp]),
        "cnx_model_output_name": (status, [model, ctypes.c_int64, c_char_pp]),
        "cnx_model_input_shape": (status, [model, ctypes.c_int64, c_int64_p, ctypes.c_int64, c_int64_p]),
        "cnx_model_output_shape": (status, [model, ctypes.c_int64, c_int64_p, ctypes.c_int64, c_int64_p]),
        "cnx_model_run": (status, [model, ctypes.c_void_p, ctypes.c_int64, c_int64_p, ctypes.c_int64,
                                   ctypes.POINTER(Output), ctypes.c_int64]),
        "cnx_model_class_count": (status, [model, c_int64_p]),
        "cnx_model_class_name": (status, [model, ctypes.c_int64, c_char_pp]),
        "cnx_model_preprocessing": (status, [model, ctypes.POINTER(Preprocessing)]),
        "cnx_model_metadata": (status, [model, ctypes.c_char_p, c_char_pp]),
        "cnx_model_metadata_json": (status, [model, c_char_pp]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
