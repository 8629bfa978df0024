"""`hpe-ros models list | fetch NAME | build-engine NAME`: model manifests (models/*.toml), downloads,
TensorRT engines."""
from __future__ import annotations

from hpe_ros.cli.common import add_progress_flag, positive_int


def _cmd_models(a) -> int:
    from hpe_ros.detect2d.fetch import build_engine_for, fetch_model
    from hpe_ros.detect2d.manifest import list_manifests, resolve_model_file

    if a.action == "list":
        for m in list_manifests():
            local = resolve_model_file(m)
            where = str(local) if local else ("not downloaded" if m.url else "no published download")
            print(f"{m.name:<14} {m.kind:<9} {m.output:<8} {m.layout or '-':<8} "
                  f"{m.input_size[0]}x{m.input_size[1]:<5} {where}")
        return 0
    if not a.name:
        raise ValueError("give a model name (see `hpe-ros models list`)")
    if a.action == "fetch":
        path = fetch_model(a.name, dest_dir=a.dir, progress=not a.no_progress, force=a.force)
    else:
        path = build_engine_for(a.name, enable_fp16=not a.fp32, max_batch=a.max_batch,
                                engine_path=a.engine_file or None)
    print(path, flush=True)
    return 0


def add_parsers(sub) -> None:
    m = sub.add_parser("models", help="model manifests: list, fetch (download + verify), build-engine (TensorRT)")
    m.add_argument("action", choices=["list", "fetch", "build-engine"])
    m.add_argument("name", nargs="?", default="", help="manifest name (models/NAME.toml) or path")
    m.add_argument("--dir", default=None, help="fetch: destination folder (default: the model cache)")
    m.add_argument("--force", action="store_true", help="fetch: download again even if present")
    m.add_argument("--fp32", action="store_true", help="build-engine: no FP16")
    m.add_argument("--max-batch", type=positive_int, default=8, help="build-engine: largest batch of the profile")
    m.add_argument("--engine-file", default="", help="build-engine: where to write the engine")
    add_progress_flag(m)
    # FetchError and BackendUnavailable (no TensorRT) are RuntimeErrors: a setup problem, told in one line.
    m.set_defaults(func=_cmd_models, input_errors=(RuntimeError,))
