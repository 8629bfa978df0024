"""Where the package's data (config/, models/, launch/) lives: the source tree or an installed share dir."""
from __future__ import annotations

from pathlib import Path


def share_dir() -> Path:
    """The folder holding config/, models/ and launch/.

    A source checkout (pip -e, CI) keeps them beside the package; a colcon install puts them in
    share/hpe_ros, found through ament_index when it is importable.
    """
    source_tree = Path(__file__).resolve().parent.parent
    if (source_tree / "config").is_dir() and (source_tree / "package.xml").is_file():
        return source_tree
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("hpe_ros"))
    except Exception:  # not installed through colcon either: fall back to the source layout
        return source_tree


def config_path(name: str) -> Path:
    return share_dir() / "config" / name


DEFAULT_RIG = "example_rig.toml"
DEFAULT_CONFIG = "multi_camera.yaml"


def resolve_path(path: str | Path, default: str | None = None) -> Path:
    """Resolve a user-given data path: as given if it exists, else inside the package's config/.

    An empty path means `default` (a file name in config/). Raises FileNotFoundError naming both places.
    """
    path = str(path or "")
    if not path:
        if default is None:
            raise FileNotFoundError("no path given and no default")
        return config_path(default)
    p = Path(path).expanduser()
    if p.exists():
        return p.resolve()
    alt = config_path(p.name)
    if alt.exists():
        return alt
    raise FileNotFoundError(f"{path}: not found (also looked for {alt})")
