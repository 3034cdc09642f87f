"""cnxruntime against the command-line tool and the fixtures' oracles.

Run by scripts/python-test.sh (which installs the package into a virtual environment first), or
directly with the package importable. Environment:
  CNX_REPO            the checkout (default: two folders up from this file)
  CNX_TOOL            the built convnext-convert (default: CNX_REPO/.build/debug/convnext-convert)
  CNX_EXPECT_BUNDLED  1: the package must use the library bundled at install time
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

import numpy as np

import cnxruntime

REPO = os.environ.get("CNX_REPO") or os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOOL = os.environ.get("CNX_TOOL") or os.path.join(REPO, ".build", "debug", "convnext-convert")
DIGITS = os.path.join(REPO, "Fixtures", "digits")
HUB = os.path.join(REPO, "Fixtures", "checkpoints", "timm_linear")


def tool(*args):
    r = subprocess.run([TOOL, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"convnext-convert {' '.join(args)} failed: {r.stderr}")
    return r


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32))


class CNXRuntimeTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="cnxruntime-test-")
        cls.digits = os.path.join(cls.dir, "digits.cnx")
        cls.int8 = os.path.join(cls.dir, "digits-int8.cnx")
        cls.hub = os.path.join(cls.dir, "hub.cnx")
        tool("convert", os.path.join(DIGITS, "model.onnx"), cls.digits)
        tool("quantize", "--int8", os.path.join(DIGITS, "model.onnx"), cls.int8, "--calibration", os.path.join(DIGITS, "calib.npy"))
        tool("convert", os.path.join(HUB, "hub"), cls.hub)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def cli_logits(self, model, x_path, threads):
        out = os.path.join(self.dir, f"cli-{os.path.basename(model)}-{threads}.npy")
        tool("run", model, "--input", x_path, "--output", out, "--threads", str(threads))
        return np.load(out)

    def test_library(self):
        self.assertTrue(os.path.isfile(cnxruntime.library_path), cnxruntime.library_path)
        if os.environ.get("CNX_EXPECT_BUNDLED") == "1":
            bundled = os.path.join(os.path.dirname(cnxruntime.__file__), "lib")
            self.assertTrue(cnxruntime.library_path.startswith(bundled), cnxruntime.library_path)

    def test_logits_equal_the_cli_bit_for_bit(self):
        x_path = os.path.join(DIGITS, "test.npy")
        x = np.load(x_path)
        expected = np.load(os.path.join(DIGITS, "test_expected.npy"))  # ONNX Runtime's
        for model in (self.digits, self.int8):
            for threads in (1, 2):
                with cnxruntime.Model(model, threads=threads) as m:
                    got = m.predict(x)
                want = self.cli_logits(model, x_path, threads)
                self.assertTrue(same_bits(got, want), f"{os.path.basename(model)} threads {threads}: max diff {np.abs(got - want).max()}")
                err = np.abs(got - expected).max() / np.abs(expected).max()
                # float32 within 1e-5 of ONNX Runtime; int8 close enough to keep the classes
                if model == self.digits:
                    self.assertLess(err, 1e-5)
                else:
                    self.assertGreater((got.argmax(1) == expected.argmax(1)).mean(), 0.97)

    def test_description_and_metadata(self):
        m = cnxruntime.Model(self.hub, threads=1)
        self.assertEqual(m.input_names, ["input"])
        self.assertEqual(m.input_shapes, [(None, 3, None, None)])
        self.assertEqual(m.output_shapes, [(None, 10)])
        self.assertEqual(m.class_names, [f"class_{i}" for i in range(10)])
        p = m.preprocessing
        self.assertEqual((p["height"], p["width"], p["interpolation"]), (256, 256, "bilinear"))
        self.assertAlmostEqual(p["crop_pct"], 0.9, places=12)
        np.testing.assert_allclose(p["mean"], [0.485, 0.456, 0.406], rtol=1e-7)
        np.testing.assert_allclose(p["std"], [0.229, 0.224, 0.225], rtol=1e-7)
        self.assertEqual(p["stated"], ["crop_pct", "interpolation", "mean", "size", "std"])
        self.assertEqual(m.metadata["general.variant"], "convnext_atto")
        self.assertEqual(m.metadata["convnext.depths"], [1, 1, 2, 1])
        # The checkpoint fixture's PyTorch logits (an outside oracle) on its own input.
        x, want = np.load(os.path.join(HUB, "input.npy")), np.load(os.path.join(HUB, "expected.npy"))
        got = m.predict(x)
        self.assertLess(np.abs(got - want).max() / np.abs(want).max(), 1e-4)
        self.assertTrue(same_bits(got, self.cli_logits(self.hub, os.path.join(HUB, "input.npy"), 1)))
        d = cnxruntime.Model(self.digits, threads=1)
        self.assertIsNone(d.class_names)
        self.assertEqual(d.preprocessing["stated"], ["size"])
        self.assertEqual(d.preprocessing["interpolation"], "bicubic")  # the default

    def test_bad_input_raises(self):
        with self.assertRaises(cnxruntime.CNXError) as e:
            cnxruntime.Model(os.path.join(self.dir, "missing.cnx"))
        self.assertEqual(e.exception.status, "CNX_ERROR_FILE")
        self.assertIn("missing.cnx", e.exception.message)
        corrupt = os.path.join(self.dir, "corrupt.cnx")
        with open(self.digits, "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2] ^= 0xFF
        with open(corrupt, "wb") as f:
            f.write(data)
        with self.assertRaises(cnxruntime.CNXError) as e:
            cnxruntime.Model(corrupt)
        self.assertEqual(e.exception.status, "CNX_ERROR_FORMAT")
        m = cnxruntime.Model(self.digits, threads=1)
        for bad in (np.zeros((1, 4, 32, 32), np.float32), np.zeros((1, 3, 16, 48), np.float32), np.zeros((3, 32, 32), np.float32)):
            with self.assertRaises(cnxruntime.CNXError) as e:
                m.predict(bad)
            self.assertEqual(e.exception.status, "CNX_ERROR_SHAPE", str(bad.shape))
        # float64 and non-contiguous input are converted, not rejected.
        x = np.load(os.path.join(DIGITS, "test.npy"))[:4]
        self.assertTrue(same_bits(m.predict(x.astype(np.float64)), m.predict(x)))
        self.assertTrue(same_bits(m.predict(np.asfortranarray(x)), m.predict(x)))
        m.close()
        with self.assertRaises(ValueError):
            m.predict(x)

    def test_threads_share_one_model(self):
        m = cnxruntime.Model(self.digits, threads=1)
        x = np.load(os.path.join(DIGITS, "test.npy"))[:16]
        want = m.predict(x)
        results, errors = [], []

        def work():
            try:
                for _ in range(20):
                    results.append(m.predict(x))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 120)
        self.assertTrue(all(same_bits(r, want) for r in results))


if __name__ == "__main__":
    print(f"cnxruntime {cnxruntime.__version__} from {cnxruntime.__file__}, library {cnxruntime.library_path}", file=sys.stderr)
    unittest.main(verbosity=2)
