"""What every `hpe-ros` command shares: per-camera paths in two forms, one error wrapper, layout choices."""
from __future__ import annotations

import argparse

import pytest

from hpe_ros.cli import build_parser, main
from hpe_ros.cli.common import camera_paths, named_camera_paths, run_command
from hpe_ros.skeleton import LAYOUTS


def test_camera_paths_take_plain_paths_or_camera_pairs():
    assert camera_paths(["pose/a", "pose/b"], "--keypoints") == ["pose/a", "pose/b"]
    assert camera_paths(["cam1=pose/a", "cam0=pose/b"], "--keypoints") == {"cam1": "pose/a", "cam0": "pose/b"}
    assert camera_paths(["runs/x=1/cam0"], "--keypoints") == ["runs/x=1/cam0"]     # '=' inside a path
    with pytest.raises(ValueError, match="--keypoints: give every camera as CAMERA=FOLDER.*not a mix"):
        camera_paths(["cam0=pose/a", "pose/b"], "--keypoints")
    with pytest.raises(ValueError, match="--keypoints 'cam0=': expected CAMERA=FOLDER"):
        camera_paths(["cam0="], "--keypoints")
    with pytest.raises(ValueError, match="camera 'cam0' is given twice"):
        camera_paths(["cam0=a", "cam0=b"], "--keypoints")
    with pytest.raises(ValueError, match="--images 'a': expected CAMERA=FOLDER_OR_VIDEO"):
        named_camera_paths(["a", "b"], "--images", "CAMERA=FOLDER_OR_VIDEO")


def _args(func, **extra):
    return argparse.Namespace(command="triangulate", func=func, **extra)


def test_error_wrapper_one_line_and_exit_status(capsys):
    def bad(_):
        raise ValueError("calib.toml: line 3\n  no [cam1] table")

    assert run_command(_args(bad)) == 2
    assert capsys.readouterr().err == "hpe-ros triangulate: error: calib.toml: line 3; no [cam1] table\n"

    def interrupted(_):
        raise KeyboardInterrupt

    assert run_command(_args(interrupted, action="board")) == 130
    assert capsys.readouterr().err == "hpe-ros triangulate board: interrupted\n"

    def setup_problem(_):
        raise RuntimeError("no TensorRT")

    assert run_command(_args(setup_problem, input_errors=(RuntimeError,))) == 2
    with pytest.raises(RuntimeError):                                  # not declared: a bug, with its traceback
        run_command(_args(setup_problem))


def test_layout_choices_are_the_registry():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("triangulate", "process", "train-lifter"):
        layout = next(a for a in sub.choices[command]._actions if a.dest == "layout")
        assert list(layout.choices) == list(LAYOUTS)


def test_no_command_and_unknown_layout_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["triangulate", "--calib", "c.toml", "--keypoints", "a", "--out", "o", "--layout", "body99"])
    assert e.value.code == 2 and "body99" in capsys.readouterr().err
