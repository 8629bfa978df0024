"""Third-party chatter off, so the user reads our output: protobuf deprecation warnings, absl and TF Lite
logging, LiteRT's delegate line, onnxruntime's logger.

Python-level noise goes through `quiet_third_party()` (environment, warning filters, log levels; call it
before the backend loads). Native libraries write to file descriptor 2 directly ("INFO: Created TensorFlow
Lite XNNPACK delegate", absl's "W0000 ..." lines), so `native_stderr_filtered()` captures that descriptor
around model loading and first inference, and writes back every line that is not known chatter.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager

NATIVE_NOISE = re.compile(
    r"^(INFO: Created TensorFlow Lite .*delegate"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+\.(cc|h):\d+\]"                    # absl / glog INFO and WARNING lines
    r"|\d{4}-\d\d-\d\d [\d:.]+ \[[IW]:onnxruntime)")


def quiet_third_party() -> None:
    """Silence the Python-visible chatter of protobuf, absl, TensorFlow Lite and onnxruntime (idempotent)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    for module in ("google.protobuf", "mediapipe", "absl", "ai_edge_litert", "tflite_runtime", "onnxruntime"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    warnings.filterwarnings("ignore", message=r".*SymbolDatabase\.GetPrototype\(\) is deprecated")
    for name in ("absl", "tensorflow", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import onnxruntime
    except ImportError:
        return
    onnxruntime.set_default_logger_severity(3)


@contextmanager
def native_stderr_filtered():
    """Capture file descriptor 2 in the block; afterwards write back the lines that are not NATIVE_NOISE.

    Python's own writes (sys.stderr) keep going to the terminal unchanged while the block runs.
    """
    try:
        fd = sys.__stderr__.fileno()
    except (AttributeError, OSError, ValueError):  # no real descriptor (embedded, captured by pytest)
        yield
        return
    saved, python_stderr = os.dup(fd), sys.stderr
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), fd)
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
        try:
            yield
        finally:
            sys.stderr.close()
            sys.stderr = python_stderr
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines()
                    if line.strip() and not NATIVE_NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)
