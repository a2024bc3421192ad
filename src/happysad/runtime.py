"""Run exported models (ONNX, LiteRT/TFLite) behind the same ``predict_on_batch`` call as a Keras model.

``bundle.load`` returns one of these adapters as ``Bundle.model`` for a ``.onnx`` or ``.tflite`` file,
so ``Predictor``, ``evaluate`` and the CLI work unchanged; preprocessing still comes from meta.json.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import numpy as np

from .errors import HappysadError

RUNTIME_SUFFIXES = (".onnx", ".tflite")
INSTALL_HINT = "install the export extra: pip install 'happysad[export]'"


class OnnxModel:
    """An ONNX file run by onnxruntime (CPU provider)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise HappysadError(f"{path}: onnxruntime is not installed ({INSTALL_HINT})") from None
        opts = ort.SessionOptions()
        # No busy-waiting after a run: a photo model runs several models in turn (LiteRT's face
        # detector, then its members) on the same few cores, and a spinning pool takes them from the
        # next one (bench/faces_latency.py, photo model on 2 cores: median 108 ms spinning, 63 ms not).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise HappysadError(f"{path}: cannot load ONNX model ({type(e).__name__}: {e})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(path)

    def predict_on_batch(self, x) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(x, dtype=np.float32)})[0]


@contextlib.contextmanager
def quiet_stderr():
    """Hide C++ start-up chatter (TensorFlow's absl/oneDNN lines, LiteRT's "Created TensorFlow Lite
    XNNPACK delegate") that ignores Python's logging: file descriptor 2 points to /dev/null meanwhile."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def litert_interpreter(path: str | Path, threads: int | None = None, hint: str = INSTALL_HINT):
    """A ready (tensors allocated) LiteRT interpreter for a ``.tflite`` file: ``ai-edge-litert`` where it
    is installed, TensorFlow's deprecated ``tf.lite.Interpreter`` otherwise."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tensorflow.lite import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise HappysadError(f"{path}: ai-edge-litert is not installed ({hint})") from None
    try:
        with quiet_stderr():
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except Exception as e:
        raise HappysadError(f"{path}: cannot load LiteRT model ({type(e).__name__}: {e})") from None
    return interpreter


class LiteRTModel:
    """A ``.tflite`` file run by the LiteRT interpreter (``ai-edge-litert``; TensorFlow's own
    ``tf.lite.Interpreter`` as a fallback). The batch dimension is resized on demand; the interpreter
    is not thread-safe, hence the lock."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.interpreter = litert_interpreter(path, threads)
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._batch = int(self._in["shape"][0])
        self._lock = threading.Lock()
        self.path = Path(path)

    def predict_on_batch(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=self._in["dtype"])
        with self._lock:
            if len(x) != self._batch:
                self.interpreter.resize_tensor_input(self._in["index"], list(x.shape))
                self.interpreter.allocate_tensors()
                self._batch = len(x)
            self.interpreter.set_tensor(self._in["index"], x)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._out["index"]).copy()


def load_runtime(path: str | Path, threads: int | None = None):
    """The adapter for an exported model file, chosen by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return OnnxModel(path, threads)
    if suffix == ".tflite":
        return LiteRTModel(path, threads)
    raise HappysadError(f"{path}: not an exported model (expected {' or '.join(RUNTIME_SUFFIXES)})")
