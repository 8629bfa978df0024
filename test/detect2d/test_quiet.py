"""Third-party chatter filtered: native start-up lines dropped, anything else written back."""
from __future__ import annotations

import os
import sys

from hpe_ros.detect2d.quiet import NATIVE_NOISE, native_stderr_filtered, quiet_third_party


def test_known_native_chatter_matches_and_real_messages_do_not():
    noise = ["INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
             "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "W0000 00:00:1796239772.601661   10907 inference_feedback_manager.cc:114] Feedback manager requires",
             "I0000 00:00:1796239772.601661   10907 gl_context.cc:357] GL version: 2.1"]
    kept = ["E0000 00:00:1796239772.601661   10907 graph.cc:12] model failed to load",
            "cam01.mp4: the decoder failed on frame 3", "Traceback (most recent call last):"]
    assert all(NATIVE_NOISE.match(line) for line in noise)
    assert not any(NATIVE_NOISE.match(line) for line in kept)


def test_native_stderr_keeps_what_is_not_chatter(capfd):
    quiet_third_party()
    with native_stderr_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nreal native error\n")
        print("python stderr goes straight through", file=sys.stderr)
    err = capfd.readouterr().err
    assert "XNNPACK" not in err
    assert "real native error" in err and "python stderr goes straight through" in err
