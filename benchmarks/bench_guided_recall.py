"""Per-camera 2D recall of the blazepose backend on Pose2Sim's two-person demo, without and with 3D-guided
crops (`hpe-ros process`'s two passes).

    .venv/bin/python benchmarks/bench_guided_recall.py [--max-frames N] [--every K]

Reference people: the final (second-pass) 3D tracks, projected into each camera. A person counts in a camera
and frame when its projected hip centre is in the image; it is found when one of that camera's 2D people has
a median distance to the projected joints (COCO-17) under 15% of the person's projected height. Recall =
found / counted, per camera and person id, for pass 1 (detector + ROI tracking) and pass 2 (+ guided crops).
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hpe_ros.detect2d import create_backend
from hpe_ros.detect2d.guided_crops import GuidedBackend
from hpe_ros.detect2d.quiet import native_stderr_filtered, quiet_third_party
from hpe_ros.io.calibration import load_rig
from hpe_ros.realdata import demo_dir
from hpe_ros.skeleton import convert, get_layout
from hpe_ros.videos import process_videos

MATCH_SHARE = 0.15


class Recorder:
    """A backend wrapper keeping every call's 2D people per camera."""

    def __init__(self, backend):
        self.backend, self.name, self.layout, self.frames = backend, backend.name, backend.layout, []

    def infer(self, images, streams):
        out = self.backend.infer(images, streams)
        self.frames.append(dict(zip(streams, (p for p, _ in out))))
        return out


def recall(rig, tracks: np.ndarray, frames: list[dict], layout: str) -> dict:
    """tracks: (T, N, J, 3) world m in `layout`; frames: per step {camera: points (P, 33, 2)} -> recall table."""
    lay = get_layout(layout)
    table = {}
    for cam in rig:
        per_id = {}
        for n in range(tracks.shape[1]):
            counted = found = 0
            for t, dets in enumerate(frames):
                px = cam.project(tracks[t, n])
                hip = lay.hip_centre(px)
                if not np.isfinite(hip).all() or not cam.in_image(hip[None])[0]:
                    continue
                counted += 1
                height = np.nanmax(px[:, 1]) - np.nanmin(px[:, 1])
                people = convert(dets.get(cam.name, np.zeros((0, 33, 2))), "blazepose33", layout)
                if len(people):
                    err = np.nanmedian(np.linalg.norm(people - px[None], axis=-1), axis=1)
                    found += bool((err < MATCH_SHARE * height).any())
            per_id[n] = {"frames": counted, "recall": round(found / max(counted, 1), 3)}
        table[cam.name] = per_id
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-frames", type=int, default=None, help="first N frames (default: all 100)")
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "tflite"])
    a = ap.parse_args(argv)
    quiet_third_party()
    demo = demo_dir("Demo_MultiPerson")
    videos = [demo / "videos" / f"cam0{k}.mp4" for k in range(1, 5)]
    calib = demo / "calibration" / "Calib.qca.txt"
    rig = load_rig(calib)
    with native_stderr_filtered():
        backend = create_backend("blazepose", runtime=a.runtime, threads=1)
    first = Recorder(backend)
    t0, c0 = time.perf_counter(), time.process_time()
    result1 = process_videos(videos, calib, first, "coco17", max_frames=a.max_frames, progress=False)
    t1, c1 = time.perf_counter(), time.process_time()
    backend.reset()
    second = Recorder(GuidedBackend(backend, rig, result1.points, result1.layout))
    result2 = process_videos(videos, calib, second, "coco17", max_frames=a.max_frames, progress=False)
    t2, c2 = time.perf_counter(), time.process_time()
    ids = result2.ids.tolist()
    print(json.dumps({
        "frames": len(second.frames), "reference_ids": ids, "first_pass_ids": result1.ids.tolist(),
        "recall_without_guided_crops": recall(rig, result2.points, first.frames, "coco17"),
        "recall_with_guided_crops": recall(rig, result2.points, second.frames, "coco17"),
        "guided_rois_per_camera": second.backend.guided,
        "frames_per_id": {"pass1": result1.frames_per_id(), "pass2": result2.frames_per_id()},
        "seconds": {"pass1_wall": round(t1 - t0, 1), "pass1_cpu": round(c1 - c0, 1),
                    "pass2_wall": round(t2 - t1, 1), "pass2_cpu": round(c2 - c1, 1)},
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
