"""`hpe-ros`: the package's command line.

    hpe-ros demo [--out demo_out]                      node graph on a synthetic rig, scored, with a picture
    hpe-ros run --config config/multi_camera.yaml [--sim] [--in-process] [--duration S]
                                                       the same graph as `ros2 launch hpe_ros multi_camera.launch.py`
    hpe-ros triangulate --calib CALIB.toml --keypoints DIR_CAM1 DIR_CAM2 ... --out OUT
                        [--layout body25|body25b|coco17|halpe26] [--fps 30] [--format trc|json|auto] [--y-up]
                                                       OpenPose JSON folders -> OUT.trc or OUT.json + OUT.report.json
    hpe-ros process --videos CAM1.mp4 CAM2.mp4 ... --calib CALIB.toml --out OUT.json
                    [--backend onnxruntime --model rtmpose-m --detector rtmdet-nano] [--save-2d DIR]
                                                       2D inference on synchronised videos, fused into 3D skeletons
    hpe-ros models list | fetch NAME | build-engine NAME   model manifests (models/*.toml), downloads, TensorRT engines
    hpe-ros calibrate convert SRC DST [--to toml|rig-yaml|opencv]
    hpe-ros calibrate board --board checkerboard:COLSxROWS:SQUARE_M | charuco:COLSxROWS:SQUARE_M:MARKER_M[:DICT]
                            --images CAM=FOLDER_OR_VIDEO ... --out OUT.toml [--report OUT.png]
    hpe-ros calibrate from-people --calib INTRINSICS.toml --keypoints DIR_CAM1 DIR_CAM2 ... --layout LAYOUT
                            --out OUT.toml [--person-height METRES]
    hpe-ros train-lifter --out DIR [--method supervised|epipolar|cycle|ites] [--arch mlp|gcn] [--init default] ...
    hpe-ros eval-lifter --data FILE.npz [--model PATH]   JSON {"frames", "mpjpe_mm", "pmpjpe_mm", "nmpjpe_mm"}
    hpe-ros lifter-data --out FILE.npz [--activities squat,wave] [--noise-px 3]   synthetic evaluation data
                                                       (see hpe_ros/lift/commands.py)
"""
from __future__ import annotations

import argparse
import sys
import time

from hpe_ros.resources import DEFAULT_CONFIG, resolve_path


def _cmd_demo(a) -> int:
    from hpe_ros.demo import run_demo

    run_demo(a.out, a.duration, a.cameras, a.people, a.seed)
    return 0


def _cmd_run(a) -> int:
    from hpe_ros.ros.launcher import ProcessGraph, graph, load_config, run_in_process

    path = resolve_path(a.config, DEFAULT_CONFIG)
    config = load_config(path)
    nodes = graph(a.sim)
    print(f"hpe-ros run: {' -> '.join(nodes)} with {path} ({'one process' if a.in_process else 'a process per node'})",
          flush=True)
    if a.in_process:
        run_in_process(nodes, config, a.duration)
        return 0
    procs = ProcessGraph(nodes, path)
    try:
        end = time.monotonic() + a.duration if a.duration else None
        while end is None or time.monotonic() < end:
            dead = [n for n, ok in procs.alive().items() if not ok]
            if dead:
                print(f"hpe-ros run: {', '.join(dead)} exited; stopping the graph", file=sys.stderr)
                procs.stop()
                return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    procs.stop()
    return 0


def _cmd_triangulate(a) -> int:
    import logging

    from hpe_ros.offline import format_report, output_paths, triangulate_folders, write_outputs

    logging.basicConfig(level=logging.WARNING, format="hpe-ros triangulate: %(message)s")
    try:
        output_paths(a.out, a.format)  # a contradictory --out / --format fails before the work
        result = triangulate_folders(a.calib, a.keypoints, a.layout, a.fps, progress=not a.no_progress)
        print(format_report(result.report), flush=True)
        written = write_outputs(result, a.out, a.format, a.y_up)
    except (ValueError, OSError) as exc:  # CalibrationError is a ValueError; nothing was written
        print(f"hpe-ros triangulate: error: {exc}", file=sys.stderr)
        return 2
    who = f"person {written['person_id']}" if written["format"] == "trc" else f"{len(result.ids)} person id(s)"
    print(f"wrote {written['output']} ({who}, {written['up_axis']}-up) and {written['report']}", flush=True)
    return 0


def _backend_from_args(a):
    from hpe_ros.detect2d import create_backend

    if a.backend == "mediapipe":
        return create_backend("mediapipe", model_complexity=a.model_complexity)
    return create_backend(a.backend, model=a.model, model_file_path=a.model_file or "", detector=a.detector,
                          detector_file_path=a.detector_file or "", engine_file_path=a.engine_file or "",
                          enable_fp16=not a.fp32, topdown={"detect_every": a.detect_every})


def _cmd_process(a) -> int:
    import logging

    from hpe_ros.detect2d import BackendUnavailable
    from hpe_ros.offline import format_report, output_paths, write_outputs
    from hpe_ros.videos import process_videos

    logging.basicConfig(level=logging.WARNING, format="hpe-ros process: %(message)s")
    try:
        output_paths(a.out, a.format)
        backend = _backend_from_args(a)
        result = process_videos(a.videos, a.calib, backend, a.layout, a.fps, a.save_2d, a.max_frames,
                                progress=not a.no_progress)
        print(format_report(result.report), flush=True)
        written = write_outputs(result, a.out, a.format, a.y_up)
    except (ValueError, OSError, BackendUnavailable) as exc:
        print(f"hpe-ros process: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written['output']} ({len(result.ids)} person id(s), 2D by {result.report['backend']}) and "
          f"{written['report']}" + (f"; 2D keypoints in {a.save_2d}" if a.save_2d else ""), flush=True)
    return 0


def _cmd_models(a) -> int:
    from hpe_ros.detect2d.fetch import FetchError, build_engine_for, fetch_model
    from hpe_ros.detect2d.manifest import list_manifests, resolve_model_file

    try:
        if a.action == "list":
            for m in list_manifests():
                local = resolve_model_file(m)
                where = str(local) if local else ("not downloaded" if m.url else "no published download")
                print(f"{m.name:<14} {m.kind:<9} {m.output:<8} {m.layout or '-':<8} "
                      f"{m.input_size[0]}x{m.input_size[1]:<5} {where}")
            return 0
        if not a.name:
            print(f"hpe-ros models {a.action}: give a model name (see `hpe-ros models list`)", file=sys.stderr)
            return 2
        if a.action == "fetch":
            path = fetch_model(a.name, dest_dir=a.dir, progress=not a.no_progress, force=a.force)
        else:
            path = build_engine_for(a.name, enable_fp16=not a.fp32, max_batch=a.max_batch,
                                    engine_path=a.engine_file or None)
    except (FetchError, ValueError, OSError, RuntimeError) as exc:  # BackendUnavailable is a RuntimeError
        print(f"hpe-ros models {a.action}: error: {exc}", file=sys.stderr)
        return 2
    print(path, flush=True)
    return 0


def _parse_board(spec: str):
    """'checkerboard:9x6:0.04' or 'charuco:7x5:0.04:0.03[:DICT_4X4_50]' -> Board."""
    from hpe_ros.calibration.board import Board

    parts = spec.split(":")
    usage = (f"--board {spec!r}: expected checkerboard:COLSxROWS:SQUARE_M (inner corners) or "
             "charuco:COLSxROWS:SQUARE_M:MARKER_M[:DICT] (squares), e.g. checkerboard:9x6:0.04")
    shapes = {"checkerboard": (3,), "charuco": (4, 5)}
    if parts[0] not in shapes or len(parts) not in shapes[parts[0]]:
        raise ValueError(usage)
    try:
        cols, rows = (int(v) for v in parts[1].lower().split("x"))
        sizes = [float(v) for v in parts[2:4]]
    except ValueError:
        raise ValueError(usage) from None
    if parts[0] == "checkerboard":
        return Board(kind="checkerboard", cols=cols, rows=rows, square=sizes[0])
    extra = {"dictionary": parts[4]} if len(parts) == 5 else {}
    return Board(kind="charuco", cols=cols, rows=rows, square=sizes[0], marker=sizes[1], **extra)


def parse_named(items, flag: str, form: str) -> dict[str, str]:
    """["cam0=path", ...] -> {"cam0": "path", ...}; ValueError naming `flag` and the expected `form`."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} {item!r}: expected {form}")
        out[name] = path
    return out


def _cmd_calibrate(a) -> int:
    import json
    import logging

    from hpe_ros.calibration import load_rig, save_rig
    from hpe_ros.io.atomic import write_text_atomic

    logging.basicConfig(level=logging.WARNING, format="hpe-ros calibrate: %(message)s")
    try:
        if a.action == "convert":
            from hpe_ros.calibration.formats import convert_calibration

            rig = convert_calibration(a.src, a.dst, to=a.to)
            print(f"wrote {a.dst} ({len(rig)} cameras: {', '.join(rig.names)})", flush=True)
            return 0
        if a.action == "board":
            from hpe_ros.calibration.board_calibration import (calibrate_board, format_board_report,
                                                               render_board_report)

            sources = parse_named(a.images, "--images", "CAMERA=FOLDER_OR_VIDEO")
            rig, report = calibrate_board(sources, _parse_board(a.board), progress=not a.no_progress,
                                          max_views=a.max_views, step=a.step)
            print(format_board_report(report), flush=True)
            save_rig(rig, a.out)
            picture = render_board_report(report, a.report or f"{a.out}.report.png")
            print(f"wrote {a.out} and {picture}", flush=True)
            return 0
        from hpe_ros.calibration.from_people import calibrate_from_people, load_keypoint_folders

        intrinsics = load_rig(a.calib)
        if len(a.keypoints) != len(intrinsics):
            raise ValueError(f"{a.calib} has {len(intrinsics)} cameras ({', '.join(intrinsics.names)}) but "
                             f"{len(a.keypoints)} keypoint folders were given, in the calibration's order")
        points2d, scores = load_keypoint_folders(a.keypoints, a.layout)
        rig, report = calibrate_from_people(intrinsics, points2d, scores, a.layout, person_height=a.person_height,
                                            progress=not a.no_progress)
        save_rig(rig, a.out)
        report_path = a.report or f"{a.out}.report.json"
        write_text_atomic(report_path, json.dumps(report, indent=2, default=str) + "\n")
        for name, row in report.get("per_camera", {}).items():
            print(f"{name:<12} rms {row.get('rms_px')} px, median {row.get('median_px')} px, "
                  f"{row.get('observations')} observations", flush=True)
        print(f"scale: {json.dumps(report.get('scale'), default=str)}", flush=True)
        print(f"wrote {a.out} and {report_path}", flush=True)
        return 0
    except (ValueError, OSError) as exc:  # CalibrationError is a ValueError; files are written atomically
        print(f"hpe-ros calibrate {a.action}: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hpe-ros", description="multi-camera 3D human pose estimation for ROS 2")
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the node graph on a synthetic rig and score it")
    d.add_argument("--out", default="demo_out", help="folder for summary.json, skeletons.png and logs")
    d.add_argument("--duration", type=float, default=10.0, help="seconds of fused output to score")
    d.add_argument("--cameras", type=int, default=4)
    d.add_argument("--people", type=int, default=2)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("run", help="start the node graph from a parameter file")
    r.add_argument("--config", default="", help=f"ROS parameter YAML (default: the package's {DEFAULT_CONFIG})")
    r.add_argument("--sim", action="store_true", help="synthetic rig instead of camera_pose_node")
    r.add_argument("--in-process", action="store_true", help="all nodes on one executor in this process")
    r.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser("triangulate", help="fuse OpenPose JSON folders (one per camera) into a TRC or skeleton JSON")
    t.add_argument("--calib", required=True, help="calibration file (anipose/Pose2Sim TOML, rig YAML, OpenCV)")
    t.add_argument("--keypoints", required=True, nargs="+", metavar="DIR",
                   help="one OpenPose JSON folder per camera, in the calibration file's camera order")
    t.add_argument("--out", required=True,
                   help="output path without suffix (or ending in .trc / .json); the report goes to OUT.report.json")
    t.add_argument("--layout", default="body25", choices=["body25", "body25b", "coco17", "halpe26"],
                   help="keypoint layout of the JSON files (default: OpenPose's body25)")
    t.add_argument("--fps", type=float, default=30.0, help="frame rate of the videos (frame i is at i / fps s)")
    t.add_argument("--format", default="auto", choices=["auto", "trc", "json"],
                   help="auto: TRC when exactly one person id appears, else JSON; trc: the longest-lived id")
    t.add_argument("--y-up", action="store_true", help="write y-up coordinates as Pose2Sim does for OpenSim "
                                                      "((x, y, z) -> (y, z, x)); default keeps the z-up world")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_triangulate)

    p = sub.add_parser("process", help="2D inference on synchronised videos, fused into 3D skeletons")
    p.add_argument("--videos", required=True, nargs="+", metavar="VIDEO",
                   help="one video per camera, in the calibration file's camera order, frame i of each at the same time")
    p.add_argument("--calib", required=True, help="calibration file (anipose/Pose2Sim TOML, rig YAML, OpenCV)")
    p.add_argument("--out", required=True, help="output path (.json / .trc or a stem); report in OUT.report.json")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt", "torch", "mediapipe"])
    p.add_argument("--model", default="rtmpose-m", help="pose model: manifest name or .toml path")
    p.add_argument("--model-file", help="pose network file (default: the manifest's downloaded file)")
    p.add_argument("--detector", default="", help="person detector manifest (default: none = one person per frame)")
    p.add_argument("--detector-file", help="detector network file")
    p.add_argument("--engine-file", help="tensorrt: engine path (default: the engine cache)")
    p.add_argument("--fp32", action="store_true", help="tensorrt: build without FP16")
    p.add_argument("--detect-every", type=int, default=1, help="run the detector every N frames")
    p.add_argument("--model-complexity", type=int, default=1, help="mediapipe: 0, 1 or 2")
    p.add_argument("--layout", default="coco17", choices=["coco17", "halpe26", "body25", "body25b"],
                   help="layout of the output skeletons and saved 2D keypoints")
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: the videos' own)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--save-2d", metavar="DIR", help="also write the 2D keypoints as OpenPose JSON folders in DIR")
    p.add_argument("--format", default="auto", choices=["auto", "trc", "json"])
    p.add_argument("--y-up", action="store_true", help="y-up output as Pose2Sim/OpenSim expect")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_process)

    m = sub.add_parser("models", help="model manifests: list, fetch (download + verify), build-engine (TensorRT)")
    m.add_argument("action", choices=["list", "fetch", "build-engine"])
    m.add_argument("name", nargs="?", default="", help="manifest name (models/NAME.toml) or path")
    m.add_argument("--dir", default=None, help="fetch: destination folder (default: the model cache)")
    m.add_argument("--force", action="store_true", help="fetch: download again even if present")
    m.add_argument("--fp32", action="store_true", help="build-engine: no FP16")
    m.add_argument("--max-batch", type=int, default=8, help="build-engine: largest batch of the profile")
    m.add_argument("--engine-file", default="", help="build-engine: where to write the engine")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(func=_cmd_models)

    c = sub.add_parser("calibrate", help="calibration: convert files, calibrate from a board or from people")
    csub = c.add_subparsers(dest="action", required=True)
    cc = csub.add_parser("convert", help="convert between anipose TOML, rig YAML (camera_info files) and OpenCV YAML")
    cc.add_argument("src")
    cc.add_argument("dst")
    cc.add_argument("--to", default="auto", choices=["auto", "toml", "rig-yaml", "opencv", "camera-info"],
                    help="auto: by DST's suffix (.toml; .yaml/.yml = rig YAML; .xml/.json = OpenCV; "
                         "a folder = camera_info files + rig YAML)")
    cc.set_defaults(func=_cmd_calibrate)
    cb = csub.add_parser("board", help="intrinsics + extrinsics from a checkerboard / ChArUco seen by the cameras")
    cb.add_argument("--board", required=True, help="checkerboard:9x6:0.04 or charuco:7x5:0.04:0.03[:DICT_4X4_50]")
    cb.add_argument("--images", required=True, nargs="+", metavar="CAM=PATH",
                    help="per camera a folder of images or a video, frames synchronised by index; "
                         "the first camera defines the world frame")
    cb.add_argument("--out", required=True, help="calibration file to write (.toml, .yaml)")
    cb.add_argument("--report", default="", help="report picture (default: OUT.report.png)")
    cb.add_argument("--max-views", type=int, default=40, help="views per camera used for its intrinsics")
    cb.add_argument("--step", type=int, default=1, help="use every STEP-th frame")
    cb.add_argument("--no-progress", action="store_true")
    cb.set_defaults(func=_cmd_calibrate)
    cp = csub.add_parser("from-people", help="extrinsics from people walking through the scene (no board)")
    cp.add_argument("--calib", required=True, help="intrinsics of the cameras (their extrinsics are ignored)")
    cp.add_argument("--keypoints", required=True, nargs="+", metavar="DIR",
                    help="one OpenPose JSON folder per camera, synchronised by frame index, calibration order")
    cp.add_argument("--layout", default="body25", choices=["body25", "body25b", "coco17", "halpe26"])
    cp.add_argument("--out", required=True, help="calibration file to write")
    cp.add_argument("--person-height", type=float, default=None,
                    help="standing height (m) of the person(s) for metric scale (default: 1.70 m, said in the report)")
    cp.add_argument("--report", default="", help="report JSON (default: OUT.report.json)")
    cp.add_argument("--no-progress", action="store_true")
    cp.set_defaults(func=_cmd_calibrate)

    from hpe_ros.lift.commands import add_parsers as add_lifter_parsers

    add_lifter_parsers(sub)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
