"""Calibration boards: definitions, detection in images, frames from folders or videos, and synthetic views.

Board frame (both kinds): x along the board's rows (to the right on the printed board), y down the
printed board, z = 0 on the board plane and +z pointing *into* the board, away from a camera that sees
its printed face. A camera looking at the face therefore sees x to the right and y downwards.

* checkerboard, ``Board.checkerboard(cols, rows, square)``: `cols` x `rows` *inner* corners (a printed
  board of (cols + 1) x (rows + 1) squares). Corner ``j * cols + i`` is at ``(i * square, j * square, 0)``,
  the origin is the first inner corner. The square outside corner 0 is black. A checkerboard reads the
  same after a half turn when cols + rows is even; then cameras on different sides may number its corners
  differently, which breaks multi-camera calibration: use cols + rows odd (e.g. 9 x 6), or ChArUco.
* ChArUco, ``Board.charuco(squares_x, squares_y, square, marker, dictionary)``: OpenCV's
  ``cv2.aruco.CharucoBoard`` (not the legacy pre-4.6 pattern). Its (squares_x - 1) x (squares_y - 1)
  chessboard corners are numbered as OpenCV does; corner ``j * (squares_x - 1) + i`` is at
  ``((i + 1) * square, (j + 1) * square, 0)``: the origin is the board's outer top-left corner. Corners are
  identified by their markers, so partial and rotated views are fine.

Detections are ``(ids (n,) int, corners (n, 2) float64 px)`` with ids indexing `Board.object_points()`;
pixel coordinates follow OpenCV (the centre of pixel (0, 0) is at (0, 0)).
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hpe_ros.camera import Camera

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class Board:
    """A planar calibration target. Build one with `Board.checkerboard` or `Board.charuco`.

    kind: "checkerboard" | "charuco"; cols, rows: inner corners (checkerboard) or squares (ChArUco);
    square: square side (m); marker: ArUco marker side (m, ChArUco only); dictionary: ArUco dictionary
    name as in cv2.aruco, e.g. "DICT_4X4_50" (ChArUco only).
    """

    kind: str
    cols: int
    rows: int
    square: float
    marker: float = 0.0
    dictionary: str = "DICT_4X4_50"

    def __post_init__(self):
        if self.kind not in ("checkerboard", "charuco"):
            raise ValueError(f"board kind must be 'checkerboard' or 'charuco', got {self.kind!r}")
        if int(self.cols) != self.cols or int(self.rows) != self.rows:
            raise ValueError(f"board cols and rows must be whole numbers, got {self.cols} x {self.rows}")
        smallest = 2 if self.kind == "checkerboard" else 3
        if self.cols < smallest or self.rows < smallest:
            what = "inner corners" if self.kind == "checkerboard" else "squares"
            raise ValueError(f"a {self.kind} needs at least {smallest} x {smallest} {what}, "
                             f"got {self.cols} x {self.rows}")
        if not (np.isfinite(self.square) and self.square > 0):
            raise ValueError(f"square size must be positive (metres), got {self.square}")
        if self.kind == "charuco":
            if not (np.isfinite(self.marker) and 0 < self.marker < self.square):
                raise ValueError(f"ChArUco marker size must be positive and smaller than the square "
                                 f"({self.square} m), got {self.marker}")
            import cv2

            if not hasattr(cv2.aruco, self.dictionary):
                raise ValueError(f"unknown ArUco dictionary {self.dictionary!r}; e.g. DICT_4X4_50, DICT_5X5_100")
            n_markers = (self.cols * self.rows) // 2
            size = int(self.dictionary.rsplit("_", 1)[-1]) if self.dictionary.rsplit("_", 1)[-1].isdigit() else None
            if size is not None and n_markers > size:
                raise ValueError(f"a {self.cols} x {self.rows} ChArUco board needs {n_markers} markers but "
                                 f"{self.dictionary} has {size}")
        elif (self.cols + self.rows) % 2 == 0:
            warnings.warn(f"checkerboard {self.cols} x {self.rows}: cols + rows is even, so the board looks the "
                          "same after a half turn and cameras on opposite sides may number its corners "
                          "differently; prefer cols + rows odd (e.g. 9 x 6) or a ChArUco board", stacklevel=3)

    # --- constructors ---------------------------------------------------------------------------
    @classmethod
    def checkerboard(cls, cols: int, rows: int, square: float) -> "Board":
        """A checkerboard with `cols` x `rows` inner corners and squares of `square` metres."""
        return cls("checkerboard", int(cols), int(rows), float(square))

    @classmethod
    def charuco(cls, squares_x: int, squares_y: int, square: float, marker: float,
                dictionary: str = "DICT_4X4_50") -> "Board":
        """An OpenCV ChArUco board of `squares_x` x `squares_y` squares (square and marker sides in metres)."""
        return cls("charuco", int(squares_x), int(squares_y), float(square), float(marker), str(dictionary))

    # --- geometry -------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """(columns, rows) of detectable corners."""
        return (self.cols, self.rows) if self.kind == "checkerboard" else (self.cols - 1, self.rows - 1)

    @property
    def n_corners(self) -> int:
        return self.grid[0] * self.grid[1]

    def object_points(self) -> np.ndarray:
        """(N, 3) corner positions in the board frame (m), indexed by detection ids."""
        cols, rows = self.grid
        j, i = np.divmod(np.arange(cols * rows), cols)
        offset = 0.0 if self.kind == "checkerboard" else 1.0
        return np.stack([(i + offset) * self.square, (j + offset) * self.square, np.zeros(i.size)], axis=1)

    def extent(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the printed pattern's outline in the board frame (m), without white margin."""
        if self.kind == "checkerboard":
            return -self.square, -self.square, self.cols * self.square, self.rows * self.square
        return 0.0, 0.0, self.cols * self.square, self.rows * self.square

    def describe(self) -> str:
        if self.kind == "checkerboard":
            return f"checkerboard {self.cols}x{self.rows} inner corners, {self.square * 1000:g} mm squares"
        return (f"ChArUco {self.cols}x{self.rows} squares, {self.square * 1000:g} mm squares, "
                f"{self.marker * 1000:g} mm markers, {self.dictionary}")

    # --- OpenCV objects -------------------------------------------------------------------------
    def _cv_board(self):
        return _charuco_objects(self)[0]

    def image(self, pixels_per_square: int = 64, margin_squares: float = 0.5) -> tuple[np.ndarray, float, float]:
        """Render the printed board: (uint8 image (H, W), x0, y0) where pixel *edge* (0, 0) is at board
        point (x0, y0) and one pixel is square / pixels_per_square metres. A white margin of
        `margin_squares` squares surrounds the pattern (detectors need it)."""
        return _board_image(self, int(pixels_per_square), float(margin_squares))

    # --- detection ------------------------------------------------------------------------------
    def detect(self, image: np.ndarray, fast_check: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        """Find the board in `image` (H, W) gray or (H, W, 3) BGR uint8.

        Returns (ids (n,) int64, corners (n, 2) float64 px), ids indexing `object_points()`, or None
        when the board is not found (ChArUco: fewer than 4 corners). Checkerboard: every corner or none
        (cv2.findChessboardCornersSB, falling back to findChessboardCorners; then cornerSubPix), numbered
        so that corner 0 is next to the black outer square (see the module docstring). ChArUco:
        cv2.aruco.CharucoDetector, any visible subset; corners refined again with cornerSubPix
        windows that keep clear of the markers. fast_check (checkerboard): skip images that
        cv2.checkChessboard rejects (~1 ms instead of ~60 ms for a frame without the board).
        """
        gray = _gray(image)
        if self.kind == "checkerboard":
            return _detect_checkerboard(self, gray, fast_check)
        return _detect_charuco(self, gray)


# --- detection -----------------------------------------------------------------------------------------
def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if image.ndim != 2:
        raise ValueError(f"expected a gray (H, W) or colour (H, W, 3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image


def _detect_checkerboard(board: Board, gray: np.ndarray, fast_check: bool = True):
    import cv2

    size = (board.cols, board.rows)
    if fast_check and not cv2.checkChessboard(gray, size):
        return None
    found, corners = cv2.findChessboardCornersSB(gray, size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        found, corners = cv2.findChessboardCorners(
            gray, size, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK)
        if not found:
            return None
    grid = corners.reshape(board.rows, board.cols, 2).astype(np.float64)
    # Sub-pixel refinement with a window scaled to the smallest square seen (a window reaching the
    # next corner pulls the estimate towards it): ~4x more accurate than either detector alone.
    square = min(np.linalg.norm(np.diff(grid, axis=0), axis=-1).min(),
                 np.linalg.norm(np.diff(grid, axis=1), axis=-1).min())
    window = int(np.clip(np.floor(0.3 * square), 2, 10))
    refined = cv2.cornerSubPix(gray, grid.reshape(-1, 1, 2).astype(np.float32), (window, window), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-4))
    grid = refined.reshape(board.rows, board.cols, 2).astype(np.float64)
    grid = _canonical_checkerboard_order(grid, gray)
    return np.arange(board.n_corners), grid.reshape(-1, 2)


def _canonical_checkerboard_order(grid: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """Renumber a detected (rows, cols, 2) grid into the board's own numbering.

    A detector may start from any corner of the grid and may mirror it. The printed face seen from the
    front keeps the board's handedness (x right, y down), so a mirrored numbering is undone first; the
    remaining half-turn ambiguity is settled by colour: the outer square beyond corner 0 is black. When
    cols + rows is even both candidate squares are black and the detector's order is kept.
    """
    import cv2

    ex, ey = grid[0, -1] - grid[0, 0], grid[-1, 0] - grid[0, 0]
    if ex[0] * ey[1] - ex[1] * ey[0] < 0:
        grid = grid[:, ::-1]
    rows, cols = grid.shape[:2]
    if (rows + cols) % 2 == 0:
        return grid
    jj, ii = np.mgrid[0:rows, 0:cols]
    H, _ = cv2.findHomography(np.stack([ii.ravel(), jj.ravel()], 1).astype(np.float64), grid.reshape(-1, 2))
    if H is None:
        return grid
    first = _mean_intensity(gray, H, -0.5, -0.5)
    last = _mean_intensity(gray, H, cols - 0.5, rows - 0.5)
    return grid[::-1, ::-1] if first > last else grid


def _apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    q = np.c_[points, np.ones(len(points))] @ H.T
    return q[:, :2] / q[:, 2:3]


def _mean_intensity(gray: np.ndarray, H: np.ndarray, gx: float, gy: float) -> float:
    """Mean gray level over the middle of the grid cell centred at grid coordinates (gx, gy)."""
    s = np.linspace(-0.25, 0.25, 5)
    pts = np.stack(np.meshgrid(gx + s, gy + s), -1).reshape(-1, 2)
    p = np.c_[pts, np.ones(len(pts))] @ H.T
    uv = np.rint(p[:, :2] / p[:, 2:3]).astype(int)
    h, w = gray.shape
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    return float(gray[uv[ok, 1], uv[ok, 0]].mean()) if ok.any() else 127.0


@functools.lru_cache(maxsize=8)
def _charuco_objects(board: Board):
    import cv2

    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, board.dictionary))
    cv_board = cv2.aruco.CharucoBoard((board.cols, board.rows), board.square, board.marker, dictionary)
    charuco_parameters = cv2.aruco.CharucoParameters()
    charuco_parameters.tryRefineMarkers = True  # find markers the first pass missed, from the board layout
    detector = cv2.aruco.CharucoDetector(cv_board, charuco_parameters, cv2.aruco.DetectorParameters())
    return cv_board, detector


def _detect_charuco(board: Board, gray: np.ndarray):
    import cv2

    _, detector = _charuco_objects(board)
    corners, ids, _, _ = detector.detectBoard(gray)
    if ids is None or corners is None or len(ids) < 4:
        return None
    ids = np.asarray(ids, dtype=np.int64).ravel()
    corners = np.asarray(corners, dtype=np.float32).reshape(-1, 1, 2)
    # Refine again with a window that stays clear of the markers: the detector's window reaches into
    # the marker borders next to each corner at small scales and biases the corner. Per corner, the
    # window's half-size is 0.8 x the image distance from the corner to the nearest marker (local
    # homography of the detected corners), at least 2 px.
    obj = board.object_points()[ids, :2]
    H, _ = cv2.findHomography(obj, corners.reshape(-1, 2).astype(np.float64))
    if H is None:
        window = np.full(len(ids), 2)
    else:
        gap = (board.square - board.marker) / 2
        base = _apply_homography(H, obj)
        near = np.min([np.linalg.norm(_apply_homography(H, obj + d) - base, axis=1)
                       for d in ((gap, 0.0), (-gap, 0.0), (0.0, gap), (0.0, -gap))], axis=0)
        window = np.clip(np.floor(0.8 * np.nan_to_num(near, nan=2.0)), 2, 10).astype(int)
    refined = corners.copy()
    for w in np.unique(window):
        pick = window == w
        refined[pick] = cv2.cornerSubPix(gray, np.ascontiguousarray(corners[pick]), (int(w), int(w)), (-1, -1),
                                         (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-4))
    corners = refined.reshape(-1, 2).astype(np.float64)
    order = np.argsort(ids, kind="stable")
    return ids[order], corners[order]


# --- frames from folders and videos ----------------------------------------------------------------
def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in `folder`, sorted by name (the frame index is the position in this list)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_frames(source: str | os.PathLike, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, BGR image (H, W, 3) uint8) from a folder of images or a video file.

    Folder: images sorted by file name; frame_index is the position in that order (so camera folders
    holding frame_000.png, frame_001.png, ... line up by index). Video: frame_index is the frame number.
    Frames are synchronised across cameras by this index. `step` keeps every step-th frame.
    Raises FileNotFoundError for a missing source and ValueError for an unreadable one.
    """
    import cv2

    source = Path(source)
    step = max(1, int(step))
    if source.is_dir():
        for index, path in enumerate(list_images(source)):
            if index % step:
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{path}: not a readable image")
            yield index, image
        return
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder or video file")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"{source}: not a readable video (or a folder of images)")
    try:
        index = 0
        while True:
            ok = capture.grab()
            if not ok:
                break
            if index % step == 0:
                ok, image = capture.retrieve()
                if not ok:
                    break
                yield index, image
            index += 1
    finally:
        capture.release()


def count_frames(source: str | os.PathLike) -> int | None:
    """Number of frames in a folder or video (a video's own count, which may be approximate), or None."""
    import cv2

    source = Path(source)
    if source.is_dir():
        return len(list_images(source))
    capture = cv2.VideoCapture(str(source))
    try:
        n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return n or None


# --- synthetic views -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _board_image(board: Board, pixels_per_square: int, margin_squares: float):
    margin = int(round(margin_squares * pixels_per_square))
    x0, y0, x1, y1 = board.extent()
    nx, ny = int(round((x1 - x0) / board.square)), int(round((y1 - y0) / board.square))
    if board.kind == "checkerboard":
        b, a = np.mgrid[0:ny, 0:nx]
        squares = np.where((a + b) % 2 == 0, 0, 255).astype(np.uint8)
        pattern = np.kron(squares, np.ones((pixels_per_square, pixels_per_square), np.uint8))
        image = np.full((ny * pixels_per_square + 2 * margin, nx * pixels_per_square + 2 * margin), 255, np.uint8)
        image[margin:margin + pattern.shape[0], margin:margin + pattern.shape[1]] = pattern
    else:
        size = (nx * pixels_per_square + 2 * margin, ny * pixels_per_square + 2 * margin)
        image = board._cv_board().generateImage(size, marginSize=margin, borderBits=1)
    image.setflags(write=False)
    metres_per_pixel = board.square / pixels_per_square
    return image, x0 - margin * metres_per_pixel, y0 - margin * metres_per_pixel


@functools.lru_cache(maxsize=8)
def _undistorted_grid(K: bytes, dist: bytes, size: tuple[int, int], supersample: int) -> np.ndarray:
    """Undistorted normalised coordinates (H*s, W*s, 2) float32 of every supersampled pixel centre.

    Exact (iterated to 1e-14) at every pixel centre, bicubic in between, then one Newton step on the
    distortion equation per sample: within 1e-4 px of undistorting every sample, several times faster.
    """
    from hpe_ros.camera import distort_normalized

    import cv2

    K = np.frombuffer(K).reshape(3, 3)
    dist = np.frombuffer(dist)
    w, h = size
    s, pad = supersample, 2
    pts = np.stack(np.meshgrid(np.arange(-pad, w + pad, dtype=np.float64),
                               np.arange(-pad, h + pad, dtype=np.float64)), -1).reshape(-1, 1, 2)
    xy = cv2.undistortPoints(pts, K, dist, None, None, None,
                             (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14))
    lattice = xy.reshape(h + 2 * pad, w + 2 * pad, 2).astype(np.float32)
    # cv2.resize samples source position (D + 0.5) / s - 0.5 for output index D: pixel centres line up.
    fine = cv2.resize(lattice, ((w + 2 * pad) * s, (h + 2 * pad) * s), interpolation=cv2.INTER_CUBIC)
    xy = fine[pad * s:(pad + h) * s, pad * s:(pad + w) * s].astype(np.float64)
    if np.any(dist):
        u = (np.arange(w * s) + 0.5) / s - 0.5
        v = (np.arange(h * s) + 0.5) / s - 0.5
        yd = (v - K[1, 2]) / K[1, 1]
        target = np.stack(np.broadcast_arrays(((u[None, :] - K[0, 2]) - K[0, 1] * yd[:, None]) / K[0, 0],
                                              yd[:, None]), -1)
        d8 = np.zeros(8)
        d8[:dist.size] = dist
        eps = 1e-7
        f0 = distort_normalized(xy, d8)
        jx = (distort_normalized(xy + [eps, 0.0], d8) - f0) / eps
        jy = (distort_normalized(xy + [0.0, eps], d8) - f0) / eps
        r = target - f0
        det = jx[..., 0] * jy[..., 1] - jy[..., 0] * jx[..., 1]
        xy[..., 0] += (jy[..., 1] * r[..., 0] - jy[..., 0] * r[..., 1]) / det
        xy[..., 1] += (-jx[..., 1] * r[..., 0] + jx[..., 0] * r[..., 1]) / det
    out = np.ascontiguousarray(xy, dtype=np.float32)
    out.setflags(write=False)
    return out


def render_board_view(board: Board, camera: Camera, board_pose: tuple[np.ndarray, np.ndarray],
                      background: float | np.ndarray = 128, blur: float = 0.0, noise: float = 0.0,
                      supersample: int = 3, pixels_per_square: int = 48, seed: int | None = None,
                      two_sided: bool = False, contrast: tuple[int, int] = (25, 235)) -> np.ndarray:
    """Render the printed board as `camera` sees it -> gray uint8 image (h, w).

    board_pose: (R (3, 3), t (3,)) board -> world, ``X_world = R @ X_board + t`` (m); the camera's own
    world -> camera pose then places it. Every pixel is supersampled `supersample` x `supersample`
    times through the camera's distortion (the exact undistortion of each sample) and the plane
    homography ``K [r1 r2 t]`` into the board texture (`Board.image`, bilinear), then averaged
    (anti-aliased edges). background: a gray level or an (h, w) uint8 image; contrast: (black, white)
    gray levels of the print; blur: Gaussian sigma (px) applied after rendering (optics); noise:
    Gaussian sigma (gray levels) of sensor noise, from `seed`. A board seen from behind is not drawn
    unless `two_sided`.
    """
    import cv2

    w, h = camera.size
    s = int(supersample)
    if np.ndim(background) == 0:
        out = np.full((h, w), float(background), np.float32)
    else:
        out = np.asarray(background, np.float32).copy()
        if out.shape != (h, w):
            raise ValueError(f"background must be a gray level or an image of shape {(h, w)}, got {out.shape}")
    R_b, t_b = np.asarray(board_pose[0], np.float64).reshape(3, 3), np.asarray(board_pose[1], np.float64).reshape(3)
    R = camera.R @ R_b  # board -> camera
    t = camera.R @ t_b + camera.t
    facing = (-(R.T @ t))[2] < 0  # camera centre on the printed side (board z < 0)
    if facing or two_sided:
        texture, x0, y0 = board.image(pixels_per_square)
        mpp = board.square / pixels_per_square
        # board plane point (x, y) -> normalised camera coordinates: H_n = [r1 r2 t]; inverse maps back.
        H_n = np.column_stack([R[:, 0], R[:, 1], t])
        region = _board_region(camera, R, t, texture.shape, x0, y0, mpp)
        if region is not None:
            ua, ub, va, vb = region
            grid = _undistorted_grid(camera.K.tobytes(), camera.dist.tobytes(), camera.size, s)
            xy = grid[va * s:vb * s, ua * s:ub * s]
            Hi = np.linalg.inv(H_n)
            q = xy @ Hi[:, :2].T + Hi[:, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                bx, by = q[..., 0] / q[..., 2], q[..., 1] / q[..., 2]
            # a sample is on the board only where its ray meets the plane in front of the camera
            ahead = q[..., 2] > 0  # q = [x, y, 1] / depth
            map_x = np.where(ahead, (bx - x0) / mpp - 0.5, -10).astype(np.float32)
            map_y = np.where(ahead, (by - y0) / mpp - 0.5, -10).astype(np.float32)
            black, white = contrast
            tex = (black + texture.astype(np.float32) * ((white - black) / 255.0)).astype(np.float32)
            inside = cv2.remap(np.ones_like(tex), map_x, map_y, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            colour = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            bg = np.repeat(np.repeat(out[va:vb, ua:ub], s, 0), s, 1)
            mixed = colour + (1 - inside) * bg
            out[va:vb, ua:ub] = cv2.resize(mixed, (ub - ua, vb - va), interpolation=cv2.INTER_AREA)
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), float(blur))
    if noise > 0:
        out = out + np.random.default_rng(seed).normal(0.0, float(noise), out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _board_region(camera: Camera, R: np.ndarray, t: np.ndarray, texture_shape, x0: float, y0: float,
                  mpp: float) -> tuple[int, int, int, int] | None:
    """Pixel box (u0, u1, v0, v1) holding the board's image, or None when it is not in view."""
    h_t, w_t = texture_shape
    edge = np.linspace(0.0, 1.0, 17)
    xs = np.concatenate([edge * w_t, np.full(17, w_t), edge[::-1] * w_t, np.zeros(17)]) * mpp + x0
    ys = np.concatenate([np.zeros(17), edge * h_t, np.full(17, h_t), edge[::-1] * h_t]) * mpp + y0
    pc = np.stack([xs, ys, np.zeros_like(xs)], 1) @ R.T + t
    w, h = camera.size
    if np.any(pc[:, 2] <= 1e-6):  # the board crosses the camera plane: scan the whole image
        return (0, w, 0, h) if np.any(pc[:, 2] > 0) else None
    xy = pc[:, :2] / pc[:, 2:3]
    if np.max(np.hypot(xy[:, 0], xy[:, 1])) > 1.5:  # far off-axis, where a distortion polynomial may fold back
        return 0, w, 0, h
    px = camera.copy(R=np.eye(3), t=np.zeros(3)).project(pc)
    if not np.all(np.isfinite(px)):
        return 0, w, 0, h
    ua, va = np.floor(px.min(0)).astype(int) - 3
    ub, vb = np.ceil(px.max(0)).astype(int) + 4
    ua, va, ub, vb = max(ua, 0), max(va, 0), min(ub, w), min(vb, h)
    if ua >= ub or va >= vb:
        return None
    return ua, ub, va, vb


def synthetic_board_poses(board: Board, rig, n: int, seed: int = 0, target=(0.0, 0.0, 1.0),
                          close_every: int = 2, close_distance: tuple[float, float] = (1.1, 1.6),
                          close_tilt_deg: float = 40.0, spread: float = 0.15,
                          shared_jitter: float = 0.35) -> list[tuple[np.ndarray, np.ndarray]]:
    """A board waved through a rig, as someone calibrating it would: n poses (R (3, 3), t (3,)) board -> world.

    Every `close_every`-th pose is a close-up for one camera in turn (at `close_distance` metres,
    centred anywhere in the middle 1 - 2 x `spread` of its image, tilted by half to all of
    `close_tilt_deg`): these pin down the intrinsics. The others sit within `shared_jitter` metres of
    `target` facing between two neighbouring cameras in turn (the rig's order around the circle), so
    that both see it: these link the cameras. The board turns freely in its plane. For the tests and
    the benchmark (with `render_board_view`).
    """
    from hpe_ros.camera import rodrigues

    rng = np.random.default_rng(seed)
    centre = board.object_points().mean(axis=0)
    cameras = list(rig)
    C = len(cameras)
    poses, shared = [], 0
    for k in range(n):
        psi = rng.uniform(-np.pi, np.pi)
        if close_every and k % close_every == close_every - 1:
            cam = cameras[(k // close_every) % C]
            w, h = cam.size
            px = rng.uniform([spread * w, spread * h], [(1 - spread) * w, (1 - spread) * h])
            ray = cam.R.T @ np.r_[cam.undistort_points(px), 1.0]
            c = cam.center + ray / np.linalg.norm(ray) * rng.uniform(*close_distance)
            to_cam = (cam.center - c) / np.linalg.norm(cam.center - c)
            axis = np.cross(to_cam, rng.normal(size=3))
            axis /= np.linalg.norm(axis)
            normal = rodrigues(axis * np.deg2rad(close_tilt_deg) * rng.uniform(0.5, 1.0)) @ to_cam
        else:
            a, b = cameras[shared % C], cameras[(shared + 1) % C]
            shared += 1
            c = np.asarray(target, np.float64) + rng.uniform(-shared_jitter, shared_jitter, 3)
            normal = sum((cam.center - c) / np.linalg.norm(cam.center - c) for cam in (a, b))
            normal = rodrigues(rng.normal(0, 0.12, 3)) @ (normal / np.linalg.norm(normal))
        z = -normal / np.linalg.norm(normal)  # board z points away from the viewers
        x = np.cross([0.0, 0.0, 1.0], z)
        x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-9 else np.array([1.0, 0.0, 0.0])
        R = np.stack([x, np.cross(z, x), z], axis=1) @ rodrigues(np.array([0.0, 0.0, psi]))
        poses.append((R, c - R @ centre))
    return poses
