"""`hpe-ros calibrate convert | board | from-people`: calibration files, from a board or from walking people."""
from __future__ import annotations

import json

from hpe_ros.cli.common import (
    LAYOUT_CHOICES,
    add_progress_flag,
    camera_paths,
    in_range,
    named_camera_paths,
    positive_int,
)


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


def _cmd_convert(a) -> int:
    from hpe_ros.io.calibration import convert_calibration

    rig = convert_calibration(a.src, a.dst, to=a.to)
    print(f"wrote {a.dst} ({len(rig)} cameras: {', '.join(rig.names)})", flush=True)
    return 0


def _cmd_board(a) -> int:
    from hpe_ros.calibration.board_calibration import calibrate_board
    from hpe_ros.calibration.board_report import format_board_report, render_board_report
    from hpe_ros.io.calibration import save_rig

    sources = named_camera_paths(a.images, "--images", "CAMERA=FOLDER_OR_VIDEO")
    rig, report = calibrate_board(sources, _parse_board(a.board), progress=not a.no_progress,
                                  max_views=a.max_views, step=a.step,
                                  world="camera0" if a.floor is None else "floor",
                                  world_frame_index=None if a.floor in (None, -1) else a.floor)
    print(format_board_report(report), flush=True)
    save_rig(rig, a.out)
    picture = render_board_report(report, a.report or f"{a.out}.report.png")
    print(f"wrote {a.out} and {picture}", flush=True)
    return 0


def _cmd_from_people(a) -> int:
    from hpe_ros.calibration.from_people import calibrate_from_people
    from hpe_ros.io.atomic import write_text_atomic
    from hpe_ros.io.calibration import load_rig, save_rig
    from hpe_ros.io.openpose import SynchronisedOpenPose

    intrinsics = load_rig(a.calib)
    recordings = [SynchronisedOpenPose.for_cameras(camera_paths(group, "--keypoints"), intrinsics.names, a.layout,
                                                   source=a.calib) for group in a.keypoints]
    points2d, scores = [], []
    for recording in recordings:
        _, points, confidence = recording.read_all(min_people=1)              # (F, C, P, J, 2), (F, C, P, J)
        points2d.append(points.swapaxes(0, 1))
        scores.append(confidence.swapaxes(0, 1))
    rig, report = calibrate_from_people(intrinsics, points2d, scores, a.layout,
                                        person_height=a.person_height, progress=not a.no_progress)
    skipped = [recording.skip_report() for recording in recordings]
    report["skipped"] = skipped[0] if len(skipped) == 1 else _merged_skip_reports(skipped)
    save_rig(rig, a.out)
    report_path = a.report or f"{a.out}.report.json"
    write_text_atomic(report_path, json.dumps(report, indent=2, default=str) + "\n")
    print(format_people_report(report), flush=True)
    print(f"wrote {a.out} and {report_path}", flush=True)
    return 0


def _merged_skip_reports(reports: list[dict]) -> dict:
    """Several recordings' "skipped" sections as one: totals per camera summed, entries concatenated."""
    per_camera: dict = {}
    for r in reports:
        for name, counts in r["per_camera"].items():
            row = per_camera.setdefault(name, dict.fromkeys(counts, 0))
            for key, value in counts.items():
                row[key] += value
    return {"total": sum(r["total"] for r in reports), "per_camera": per_camera,
            "entries": [e for r in reports for e in r["entries"]],
            "entries_left_out": sum(r["entries_left_out"] for r in reports)}


def format_people_report(report: dict) -> str:
    """`calibrate_from_people`'s report as text: per camera the bundle adjustment's reprojection RMS / median
    and observations, the scale, the data used and its warnings ("warning: too little data ...")."""
    from hpe_ros.offline import format_skipped

    px = lambda v: "-" if v is None else f"{v:.2f}"
    lines = [f"{name:<12} rms {px(row.get('reprojection_rms_px'))} px, median "
             f"{px(row.get('reprojection_median_px'))} px, {row.get('observations_used')} observations"
             for name, row in report.get("per_camera", {}).items()]
    lines.append(f"scale: {json.dumps(report.get('scale'), default=str)}")
    data = report.get("data", {})
    if data:
        recordings = report.get("frames", {}).get("recordings") or []
        source = f" ({len(recordings)} recordings)" if len(recordings) > 1 else ""
        lines.append(f"data{source}: {data.get('frames_well_seen')} frames with a person well seen by two cameras, "
                     f"positions spread over {data.get('position_spread_m')} m")
    lines += [f"warning: {w}" for w in data.get("warnings", [])]
    skipped = format_skipped(report.get("skipped"))
    return "\n".join(lines + ([skipped] if skipped else []))


def add_parsers(sub) -> None:
    c = sub.add_parser("calibrate", help="calibration: convert files, calibrate from a board or from people")
    csub = c.add_subparsers(dest="action", required=True)
    cc = csub.add_parser("convert", help="convert between anipose TOML, rig YAML (camera_info files) and OpenCV YAML")
    cc.add_argument("src")
    cc.add_argument("dst")
    cc.add_argument("--to", default="auto", choices=["auto", "toml", "rig-yaml", "opencv", "camera-info"],
                    help="auto: by DST's suffix (.toml; .yaml/.yml = rig YAML; .xml/.json = OpenCV; "
                         "a folder = camera_info files + rig YAML)")
    cc.set_defaults(func=_cmd_convert)

    cb = csub.add_parser("board", help="intrinsics + extrinsics from a checkerboard / ChArUco seen by the cameras")
    cb.add_argument("--board", required=True, help="checkerboard:9x6:0.04 or charuco:7x5:0.04:0.03[:DICT_4X4_50]")
    cb.add_argument("--images", required=True, nargs="+", metavar="CAM=PATH",
                    help="per camera a folder of images or a video, frames synchronised by index; "
                         "the first camera defines the world frame")
    cb.add_argument("--out", required=True, help="calibration file to write (.toml, .yaml)")
    cb.add_argument("--report", default="", help="report picture (default: OUT.report.png)")
    cb.add_argument("--max-views", type=positive_int, default=40, help="views per camera used for its intrinsics")
    cb.add_argument("--step", type=positive_int, default=1, help="use every STEP-th frame")
    cb.add_argument("--floor", type=int, nargs="?", const=-1, default=None, metavar="FRAME",
                    help="world on the floor, z up: the board lies face up on the floor in frame FRAME "
                         "(index as read; default: the first frame where it was found), origin at its "
                         "first corner, x along its rows; without it the first camera's optical frame")
    add_progress_flag(cb)
    cb.set_defaults(func=_cmd_board)

    cp = csub.add_parser("from-people", help="extrinsics from people walking through the scene (no board)")
    cp.add_argument("--calib", required=True, help="intrinsics of the cameras (their extrinsics are ignored)")
    cp.add_argument("--keypoints", required=True, nargs="+", action="append", metavar="DIR|CAM=DIR",
                    help="one OpenPose JSON folder per camera: DIR ... in the calibration's camera order, or "
                         "CAM=DIR ...; cameras' files are paired by the frame number in their names. Repeat "
                         "--keypoints for more recordings of the same rig: all are used together (more "
                         "positions, a better conditioned calibration)")
    cp.add_argument("--layout", default="body25", choices=LAYOUT_CHOICES)
    cp.add_argument("--out", required=True, help="calibration file to write")
    cp.add_argument("--person-height", type=in_range(0.3, 3.0), default=None,
                    help="standing height (m) of the person(s) for metric scale (default: 1.70 m, said in the report)")
    cp.add_argument("--report", default="", help="report JSON (default: OUT.report.json)")
    add_progress_flag(cp)
    cp.set_defaults(func=_cmd_from_people)
