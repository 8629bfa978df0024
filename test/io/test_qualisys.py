"""Qualisys .qca.txt reader on hand-written files: units (1/64 px, mm), the camera-in-world pose and the
Qualisys camera frame, video crops and binning, the export's XML quirks, and clear errors."""
import numpy as np
import pytest

from hpe_ros.io.calibration import CalibrationError, load_rig
from hpe_ros.io.qualisys import load_qualisys_rig, parse_qualisys

# A camera 3 m behind the origin (world y = -3 m), 1.5 m up, looking along +y: its Qualisys axes are
# x = world x, y (up) = world z, z (backwards) = world -y; rows of the transform's rotation.
LEVEL_CAMERA = """
    <camera active="1" avg-residual="0.4" model="{model}" serial="{serial}" viewrotation="0"{extra}>
      <fov_marker bottom="1079" left="0" right="1919" top="0"/>
      <fov_video bottom="{bottom}" left="{left}" right="{right}" top="{top}"/>
      <transform x="0" y="-3000" z="1500" r11="1" r12="0" r13="0" r21="0" r22="0" r23="1"
                 r31="0" r32="-1" r33="0"/>
      <intrinsic focalLengthU="64000" focalLengthV="64000" centerPointU="{cu}" centerPointV="{cv}"
                 radialDistortion1="-0.05" radialDistortion2="0.15" radialDistortion3="0"
                 tangentalDistortion1="0.001" tangentalDistortion2="-0.002" skew="0"
                 sensorMinU="0" sensorMaxU="122816" sensorMinV="0" sensorMaxV="69056"/>
    </camera>"""


def qca(*cameras: str, header: str = "<?xml version='1.0' encoding='ASCII'?>\n", source: str = "test") -> str:
    return (f'{header}<calibration source="{source}" type="regular">\n  <cameras>'
            + "".join(cameras) + "\n  </cameras>\n</calibration>\n")


def camera(serial="cam01", model="none", left=0, top=0, right=1919, bottom=1079, cu=64 * 960.0,
           cv=64 * 540.0, extra=""):
    return LEVEL_CAMERA.format(serial=serial, model=model, left=left, top=top, right=right, bottom=bottom,
                               cu=cu, cv=cv, extra=extra)


def test_units_pose_and_frame():
    rig = parse_qualisys(qca(camera()))
    cam = rig["cam01"]
    assert cam.size == (1920, 1080)
    np.testing.assert_allclose(cam.K, [[1000, 0, 960], [0, 1000, 540], [0, 0, 1]])
    np.testing.assert_allclose(cam.dist[:5], [-0.05, 0.15, 0.001, -0.002, 0.0])   # not divided by 64
    np.testing.assert_allclose(cam.center, [0.0, -3.0, 1.5], atol=1e-12)           # mm -> m
    np.testing.assert_allclose(cam.R[2], [0, 1, 0], atol=1e-12)                    # looks along +y
    # A point straight ahead lands on the principal point; one above it lands higher (smaller v),
    # one to the world's +x lands to the right: an upright, unmirrored OpenCV camera.
    ahead, above, right = cam.copy(dist=np.zeros(8)).project(np.array([[0, 0, 1.5], [0, 0, 1.8], [0.3, 0, 1.5]]))
    np.testing.assert_allclose(ahead, [960, 540], atol=1e-9)
    np.testing.assert_allclose(above, [960, 540 - 100], atol=1e-9)
    np.testing.assert_allclose(right, [960 + 100, 540], atol=1e-9)


def test_video_region_moves_the_principal_point_and_binning_scales_it():
    cropped = parse_qualisys(qca(camera(left=320, top=0, right=1599, bottom=719)))["cam01"]
    assert cropped.size == (1280, 720)
    np.testing.assert_allclose(cropped.K[:2, 2], [960 - 320, 540])
    binned = parse_qualisys(qca(camera(extra=' video_resolution="540p"')))["cam01"]
    assert binned.size == (960, 540)
    np.testing.assert_allclose(binned.K[:2, :], [[500, 0, 480], [0, 500, 270]])
    # A 1080p video of a 1088-line region is a crop QTM reports in fov_video, not a rescale.
    crop = parse_qualisys(qca(camera(bottom=1087, extra=' video_resolution="1080p"')))["cam01"]
    assert crop.size == (1920, 1088) and crop.K[0, 0] == 1000


def test_marker_and_inactive_cameras_are_left_out():
    text = qca(camera("cam01"), camera("m2", model="Miqus M3"), camera("v3", model="Miqus Video"),
               camera("off", extra="").replace('active="1" avg-residual="0.4" model="none" serial="off"',
                                               'active="0" avg-residual="0.4" model="none" serial="off"'))
    assert parse_qualisys(text).names == ["cam01", "v3"]
    assert parse_qualisys(text, video_only=False).names == ["cam01", "m2", "v3"]
    with pytest.raises(CalibrationError, match=r"no active video cameras.*Miqus M3.*video_only=False"):
        parse_qualisys(qca(camera("m2", model="Miqus M3")))


def test_export_quirks_are_tolerated(tmp_path):
    # BOM, a declaration claiming ASCII over Latin-1 bytes, a bare '&', decimal commas,
    # attribute names in another case, and text after the closing tag.
    text = qca(camera().replace('focalLengthU="64000"', 'FOCALLENGTHU="64000,0"'),
               source="C:/Données/R&D calib.qca")
    data = b"\xef\xbb\xbf" + (text + "\x00garbage").encode("latin-1")
    path = tmp_path / "Calib.qca.txt"
    path.write_bytes(data)
    rig = load_rig(path)                                                   # dispatch by extension
    assert rig.names == ["cam01"] and rig["cam01"].K[0, 0] == 1000
    assert load_qualisys_rig(path).names == ["cam01"]


@pytest.mark.parametrize("broken, message", [
    (qca(camera())[:200], r"Calib\.qca\.txt: not a valid Qualisys XML file \(line \d+, column \d+"),
    ("", r"Calib\.qca\.txt: file is empty"),
    ("<?xml version='1.0'?><settings/>", r"root element is <settings>, expected <calibration>"),
    (qca(), r"no <cameras><camera> elements"),
    (qca(camera().replace('focalLengthV="64000" ', '')), r"camera 'cam01': <intrinsic> lacks attribute focalLengthV"),
    (qca(camera().replace('z="1500"', 'z="high"')), r"camera 'cam01': <transform> z must be a number, got 'high'"),
    (qca(camera().replace('r22="0"', 'r22="2"')), r"camera 'cam01': transform rotation is not a rotation"),
    (qca(camera().replace('focalLengthU="64000"', 'focalLengthU="-64000"')), r"camera 'cam01': intrinsic focal"),
    (qca(camera(extra=' video_resolution="HD"')), r"camera 'cam01': video_resolution must look like '1080p'"),
    (qca(camera(), camera()), r"serials must be unique; repeated: \['cam01'\]"),
    (qca(camera()).replace("<transform", "<transfrm"), r"camera 'cam01': missing <transform> element"),
])
def test_broken_files_get_one_clear_line(tmp_path, broken, message):
    path = tmp_path / "Calib.qca.txt"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(CalibrationError, match=message) as error:
        load_rig(path)
    assert "\n" not in str(error.value)


def test_missing_file():
    with pytest.raises(CalibrationError, match="calibration file not found"):
        load_rig("/nonexistent/Calib.qca.txt")
