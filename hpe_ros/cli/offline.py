"""`hpe-ros triangulate` (OpenPose JSON folders) and `hpe-ros process` (videos or a rosbag2): offline 3D skeletons;
`--bag-out` writes them as the live node publishes them."""
from __future__ import annotations

from hpe_ros.cli.common import (
    LAYOUT_CHOICES,
    add_progress_flag,
    camera_paths,
    non_negative_int,
    positive_float,
    positive_int,
)

KEYPOINTS_HELP = ("one OpenPose JSON folder per camera: DIR ... in the calibration file's camera order, "
                  "or CAM=DIR ...; cameras' files are paired by the frame number in their names")


def _cmd_triangulate(a) -> int:
    from hpe_ros.offline import format_report, output_paths, triangulate_folders, write_outputs

    output_paths(a.out, a.format)  # a contradictory --out / --format fails before the work
    _check_bag_out(a)
    folders = camera_paths(a.keypoints, "--keypoints")
    result = triangulate_folders(a.calib, folders, a.layout, a.fps, progress=not a.no_progress,
                                 causal=a.causal, clip=_clip_from_args(a))
    print(format_report(result.report), flush=True)
    _print_tracking(result)
    written = write_outputs(result, a.out, a.format, a.y_up)
    who = f"person {written['person_id']}" if written["format"] == "trc" else f"{len(result.ids)} person id(s)"
    print(f"wrote {written['output']} ({who}, {written['up_axis']}-up) and {written['report']}", flush=True)
    _write_bag_out(a, result)
    return 0


def _add_clip_options(parser) -> None:
    g = parser.add_argument_group("tracks over the whole clip (default; --causal gives the live node's)")
    g.add_argument("--causal", action="store_true",
                   help="track causally as the live node does (people output after a few frames, One-Euro filter)")
    g.add_argument("--no-smooth", action="store_true", help="no zero-lag Butterworth smoothing")
    g.add_argument("--smooth-cutoff", type=positive_float, default=6.0, metavar="HZ",
                   help="cutoff of the 4th-order zero-lag Butterworth smoothing (default: 6 Hz, as Pose2Sim)")
    g.add_argument("--fill-gaps", type=non_negative_int, default=10, metavar="N",
                   help="interpolate joint gaps of up to N frames (default: 10; 0 = off)")
    g.add_argument("--min-track-frames", type=positive_int, default=5, metavar="N",
                   help="drop people present in fewer frames (default: 5)")


def _clip_from_args(a):
    from hpe_ros.fusion.offline_tracks import ClipConfig

    return ClipConfig(smooth=not a.no_smooth, cutoff_hz=a.smooth_cutoff, max_gap=a.fill_gaps,
                      min_track_frames=a.min_track_frames)


def _print_tracking(result) -> None:
    from hpe_ros.fusion.offline_tracks import describe

    print(describe(result.report["tracking"]), flush=True)


def _check_bag_out(a) -> None:
    if a.bag_out:
        from hpe_ros.io.rosbag import check_bag_out

        check_bag_out(a.bag_out)


def _write_bag_out(a, result) -> None:
    """--bag-out: the fused skeletons as fusion_node publishes them, in an MCAP bag (z-up world frame)."""
    if a.bag_out:
        from hpe_ros.io.rosbag import write_pose_bag

        path = write_pose_bag(a.bag_out, result.pose_frames(a.world_frame), result.layout, result.stamps_ns)
        print(f"wrote {path} (/human_pose_3d, /human_pose_3d/markers, /tf in frame {a.world_frame})", flush=True)


def _add_bag_out(parser) -> None:
    parser.add_argument("--bag-out", metavar="BAG",
                        help="also write an MCAP rosbag2 folder with /human_pose_3d, /human_pose_3d/markers and /tf "
                             "as fusion_node publishes them (replaces an earlier bag there)")
    parser.add_argument("--world-frame", default="world", help="frame_id of --bag-out's messages (default: world)")


def _backend_from_args(a):
    from hpe_ros.detect2d import create_backend

    if a.backend is None:
        a.backend = "onnxruntime" if a.model else "blazepose"
    a.model = a.model or "rtmpose-m"
    if a.backend == "mediapipe":
        return create_backend("mediapipe", model_complexity=a.model_complexity)
    if a.backend == "blazepose":
        config = {"detect_every": a.detect_every} if a.detect_every else {}
        return create_backend("blazepose", runtime=a.blazepose_runtime, threads=a.threads, blazepose=config)
    return create_backend(a.backend, model=a.model, model_file_path=a.model_file or "", detector=a.detector,
                          detector_file_path=a.detector_file or "", engine_file_path=a.engine_file or "",
                          enable_fp16=not a.fp32, threads=a.threads, topdown={"detect_every": a.detect_every or 1})


def _run_process(a, backend, clip):
    from hpe_ros.videos import process_bag, process_videos

    if a.bag:
        return process_bag(a.bag, a.topics, a.calib, backend, a.layout, a.fps, a.save_2d, a.max_frames,
                           progress=not a.no_progress, slop_s=a.sync_slop, causal=a.causal, clip=clip)
    return process_videos(a.videos, a.calib, backend, a.layout, a.fps, a.save_2d, a.max_frames,
                          progress=not a.no_progress, causal=a.causal, clip=clip,
                          stop_on_bad_frame=a.stop_on_bad_frame)


def _guided_pass(a, backend, clip, first):
    """Second pass: the 2D again, each camera also looking where the first pass's 3D skeletons project (the
    people its own detector missed), fused again."""
    from hpe_ros.detect2d.guided_crops import GuidedBackend
    from hpe_ros.io.calibration import load_rig

    backend.reset()
    guided = GuidedBackend(backend, load_rig(a.calib), first.points, first.layout)
    print(f"guided crops: second pass with the first pass's {len(first.ids)} person id(s) projected into "
          "every camera", flush=True)
    result = _run_process(a, guided, clip)
    result.report["guided_crops"] = {"first_pass_ids": len(first.ids),
                                     "first_pass_people_2d": first.report["detections_2d"]["people_2d"],
                                     "rois_per_camera": guided.guided}
    return result


def _cmd_process(a) -> int:
    from hpe_ros.detect2d.quiet import native_stderr_filtered, quiet_third_party
    from hpe_ros.offline import format_report, output_paths, write_outputs

    output_paths(a.out, a.format)
    _check_bag_out(a)
    if bool(a.bag) != bool(a.topics):
        raise ValueError("--bag and --topics go together: one image topic per camera, in the calibration file's order")
    clip = _clip_from_args(a)  # bad settings fail before the backend loads
    quiet_third_party()
    with native_stderr_filtered():  # model loading: LiteRT's delegate line, absl's start-up warnings
        backend = _backend_from_args(a)
    weights = f", {backend.weights}" if getattr(backend, "weights", "") else ""
    print(f"2D pose: {backend.name} (layout {backend.layout}{weights})", flush=True)
    result = _run_process(a, backend, clip)
    if hasattr(backend, "guide") and not a.no_guided_crops and len(result.ids):  # nobody fused: nothing to guide
        result = _guided_pass(a, backend, clip, result)
    print(format_report(result.report), flush=True)
    _print_tracking(result)
    written = write_outputs(result, a.out, a.format, a.y_up)
    print(f"wrote {written['output']} ({len(result.ids)} person id(s), 2D by {result.report['backend']}) and "
          f"{written['report']}" + (f"; 2D keypoints in {a.save_2d}" if a.save_2d else ""), flush=True)
    _write_bag_out(a, result)
    return 0


def _add_triangulate(sub) -> None:
    t = sub.add_parser("triangulate", help="fuse OpenPose JSON folders (one per camera) into a TRC or skeleton JSON")
    t.add_argument("--calib", required=True, help="calibration file (anipose/Pose2Sim TOML, rig YAML, OpenCV)")
    t.add_argument("--keypoints", required=True, nargs="+", metavar="DIR|CAM=DIR", help=KEYPOINTS_HELP)
    t.add_argument("--out", required=True,
                   help="output path without suffix (or ending in .trc / .json); the report goes to OUT.report.json")
    t.add_argument("--layout", default="body25", choices=LAYOUT_CHOICES,
                   help="keypoint layout of the JSON files (default: OpenPose's body25)")
    t.add_argument("--fps", type=positive_float, default=30.0,
                   help="frame rate of the videos (frame i is at i / fps s)")
    t.add_argument("--format", default="auto", choices=["auto", "trc", "json"],
                   help="auto: TRC when exactly one person id appears, else JSON; trc: the longest-lived id")
    t.add_argument("--y-up", action="store_true", help="write y-up coordinates as Pose2Sim does for OpenSim "
                                                      "((x, y, z) -> (y, z, x)); default keeps the z-up world")
    _add_clip_options(t)
    _add_bag_out(t)
    add_progress_flag(t)
    t.set_defaults(func=_cmd_triangulate)


def _add_process(sub) -> None:
    p = sub.add_parser("process", help="2D inference on synchronised videos or a rosbag2's image topics, "
                                          "fused into 3D skeletons")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", nargs="+", metavar="VIDEO",
                        help="one video per camera, in the calibration file's camera order, "
                             "frame i of each at the same time")
    source.add_argument("--bag", help="rosbag2 folder or .mcap file whose image topics (--topics) are the cameras")
    p.add_argument("--topics", nargs="+", metavar="TOPIC",
                   help="--bag: one Image or CompressedImage topic per camera, in the calibration file's order")
    p.add_argument("--sync-slop", type=positive_float, default=None, metavar="S",
                   help="--bag: largest stamp difference paired into one frame (default: half the frame period)")
    p.add_argument("--calib", required=True, help="calibration file (anipose/Pose2Sim TOML, rig YAML, OpenCV)")
    p.add_argument("--out", required=True, help="output path (.json / .trc or a stem); report in OUT.report.json")
    p.add_argument("--backend", default=None,
                   choices=["blazepose", "onnxruntime", "tensorrt", "torch", "mediapipe"],
                   help="2D poses: blazepose (the default: several people per camera, weights from mediapipe's "
                        "wheel), mediapipe (one person per camera) or a network backend (--model, --detector; "
                        "onnxruntime is the default when --model is given)")
    p.add_argument("--model", default=None, help="pose model of a network backend: manifest name or .toml path "
                                                 "(default: rtmpose-m)")
    p.add_argument("--model-file", help="pose network file (default: the manifest's downloaded file)")
    p.add_argument("--detector", default="", help="person detector manifest (default: none = one person per frame)")
    p.add_argument("--detector-file", help="detector network file")
    p.add_argument("--engine-file", help="tensorrt: engine path (default: the engine cache)")
    p.add_argument("--fp32", action="store_true", help="tensorrt: build without FP16")
    p.add_argument("--detect-every", type=positive_int, default=None,
                   help="run the detector every N frames (default: blazepose 10, network backends 1)")
    p.add_argument("--threads", type=non_negative_int, default=1,
                   help="onnxruntime / tflite intra-op threads (default: 1, steady on a busy CPU; 0 = runtime's)")
    p.add_argument("--no-guided-crops", action="store_true",
                   help="blazepose: one pass only (default: a second pass also looks where the first pass's 3D "
                        "skeletons project in each camera, for the people its detector missed)")
    p.add_argument("--model-complexity", type=int, choices=[0, 1, 2], default=1, help="mediapipe: 0, 1 or 2")
    p.add_argument("--blazepose-runtime", default="onnxruntime", choices=["onnxruntime", "tflite", "tensorrt"],
                   help="blazepose: runtime of its networks")
    p.add_argument("--layout", default="coco17", choices=LAYOUT_CHOICES,
                   help="layout of the output skeletons and saved 2D keypoints")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate (default: the videos' own, or the bag's)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames")
    p.add_argument("--stop-on-bad-frame", action="store_true",
                   help="videos: stop at the first frame a decoder fails on (default: skip that camera's frame, "
                        "warn and count it; the other cameras go on)")
    p.add_argument("--save-2d", metavar="DIR", help="also write the 2D keypoints as OpenPose JSON folders in DIR")
    p.add_argument("--format", default="auto", choices=["auto", "trc", "json"])
    p.add_argument("--y-up", action="store_true", help="y-up output as Pose2Sim/OpenSim expect")
    _add_clip_options(p)
    _add_bag_out(p)
    add_progress_flag(p)
    # A missing runtime or model (BackendUnavailable, a RuntimeError) is the user's setup, not a bug.
    p.set_defaults(func=_cmd_process, input_errors=(RuntimeError,))


def add_parsers(sub) -> None:
    _add_triangulate(sub)
    _add_process(sub)
