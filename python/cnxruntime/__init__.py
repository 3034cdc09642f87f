"""Run convnext-convert `.cnx` models from Python.

    import cnxruntime
    model = cnxruntime.Model("model.cnx", threads=4)
    logits = model.predict(batch)      # numpy float32 N x 3 x H x W -> N x classes

A thin ctypes layer over the runtime's C API (libcnxruntime, cnx.h): the numbers are the same bits
as `convnext-convert run` with the same thread count. A Model may be used from several threads
at once (the C API releases the GIL while a model runs, as ctypes does for every call).
"""
import ctypes
import json

import numpy as np

from . import _library

__version__ = "0.2.0"
__all__ = ["Model", "CNXError", "library_path"]

_lib, library_path = _library.load()


class CNXError(Exception):
    """A failed C API call: `status` is the cnx_status name (e.g. "CNX_ERROR_FILE"), `message`
    the library's one-line explanation."""

    def __init__(self, status, message):
        self.status = _library.STATUS_NAMES.get(status, f"status {status}")
        self.code = status
        self.message = message
        super().__init__(f"{self.status}: {message}")


def _check(status):
    if status != 0:
        raise CNXError(status, _lib.cnx_last_error().decode("utf-8", "replace"))


def _shape(getter, handle, index):
    dims = (ctypes.c_int64 * _library.MAX_RANK)()
    rank = ctypes.c_int64()
    _check(getter(handle, index, dims, _library.MAX_RANK, ctypes.byref(rank)))
    if rank.value < 0:
        return None
    return tuple(None if d < 0 else int(d) for d in dims[: rank.value])


class Model:
    """A .cnx model, opened once and run many times.

    threads: worker threads each run uses (0: one per core), fixed when the model is opened.
    """

    def __init__(self, path, threads=0):
        self._handle = None
        handle = ctypes.c_void_p()
        _check(_lib.cnx_model_open(str(path).encode("utf-8"), int(threads), ctypes.byref(handle)))
        self._handle = handle
        self.path = str(path)
        n = ctypes.c_int64()
        _check(_lib.cnx_model_input_count(handle, ctypes.byref(n)))
        self.input_names = [self._name(_lib.cnx_model_input_name, i) for i in range(n.value)]
        self.input_shapes = [_shape(_lib.cnx_model_input_shape, handle, i) for i in range(n.value)]
        _check(_lib.cnx_model_output_count(handle, ctypes.byref(n)))
        self.output_names = [self._name(_lib.cnx_model_output_name, i) for i in range(n.value)]
        self.output_shapes = [_shape(_lib.cnx_model_output_shape, handle, i) for i in range(n.value)]
        t = ctypes.c_int()
        _check(_lib.cnx_model_threads(handle, ctypes.byref(t)))
        self.threads = t.value
        _check(_lib.cnx_model_class_count(handle, ctypes.byref(n)))
        self.class_names = [self._name(_lib.cnx_model_class_name, i) for i in range(n.value)] or None
        text = ctypes.c_char_p()
        _check(_lib.cnx_model_metadata_json(handle, ctypes.byref(text)))
        self.metadata = json.loads(text.value.decode("utf-8"))
        p = _library.Preprocessing()
        _check(_lib.cnx_model_preprocessing(handle, ctypes.byref(p)))
        flags = {"size": 1, "crop_pct": 2, "interpolation": 4, "mean": 8, "std": 16}
        self.preprocessing = {
            "height": p.height,
            "width": p.width,
            "crop_pct": p.crop_pct,
            "interpolation": p.interpolation.decode("ascii"),
            "mean": [float(v) for v in p.mean],
            "std": [float(v) for v in p.std],
            # The values the file states; the others are ImageNet's defaults.
            "stated": sorted(k for k, bit in flags.items() if p.stated & bit),
        }
        # Output shapes seen for an input shape, for models whose outputs have open dimensions
        # besides the batch (a backbone's feature maps).
        self._sizes = {}
        self._shapes = {}

    def _name(self, getter, index):
        s = ctypes.c_char_p()
        _check(getter(self._handle, index, ctypes.byref(s)))
        return s.value.decode("utf-8")

    def close(self):
        """Releases the model (also done when it is garbage-collected)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and _lib is not None:
            _lib.cnx_model_close(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        return f"cnxruntime.Model({self.path!r}, threads={self.threads})"

    def _guess(self, batch):
        """Output sizes from the declared shapes, the batch filled in; None if another is open."""
        shapes = []
        for shape in self.output_shapes:
            if shape is None or any(d is None for d in shape[1:]):
                return None
            shapes.append((batch,) + tuple(shape[1:]) if shape and shape[0] is None else tuple(shape))
        return shapes

    def predict_all(self, x):
        """Runs the model on x (float32, N x 3 x H x W, preprocessed) and returns every output by
        name, as new float32 arrays."""
        if self._handle is None:
            raise ValueError("the model is closed")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim < 1 or x.ndim > _library.MAX_RANK:
            raise ValueError(f"input must have 1 to {_library.MAX_RANK} dimensions, got {x.ndim}")
        shape = self._shapes.get(x.shape)
        if shape is None:
            # Read-only once made: shared by every call (and thread) with this input shape.
            shape = self._shapes[x.shape] = (ctypes.c_int64 * x.ndim)(*x.shape)
        sizes = self._sizes.get(x.shape) or self._guess(x.shape[0]) or [(0,)] * len(self.output_names)
        for _ in range(2):
            ys = [np.empty(s, dtype=np.float32) for s in sizes]
            outs = (_library.Output * len(ys))()
            for o, y in zip(outs, ys):
                o.data = y.ctypes.data
                o.capacity = y.size
            status = _lib.cnx_model_run(self._handle, x.ctypes.data, x.size, shape, x.ndim, outs, len(outs))
            if status == _library.BUFFER_TOO_SMALL:
                # Now the output shapes are known: size the buffers and run again.
                sizes = [tuple(o.shape[: o.rank]) for o in outs]
                self._sizes[x.shape] = sizes
                continue
            _check(status)
            return {name: y.reshape(tuple(o.shape[: o.rank])) for name, y, o in zip(self.output_names, ys, outs)}
        _check(status)

    def predict(self, x):
        """The first output (the logits of a classifier) for x: float32 N x 3 x H x W."""
        return self.predict_all(x)[self.output_names[0]]
