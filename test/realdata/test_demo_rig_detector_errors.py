"""Simulated people on the real demo rig, detected with realistic errors and triangulated: the errors
keep their character through the real cameras (sloppy hips, sharp eyes, a joint-definition bias that
more frames do not average away)."""
import numpy as np
import pytest

from hpe_ros.fusion.triangulation import triangulate
from hpe_ros.io.qualisys import load_qualisys_rig
from hpe_ros.sim import DetectorErrors, MotionScript, observe
from hpe_ros.sim.detector_errors import person_size_px
from hpe_ros.sim.observe import project
from hpe_ros.skeleton import COCO17

pytestmark = pytest.mark.realdata

MEETING_POINT = np.array([-0.94, -0.02, 0.0])   # below where the demo cameras' optical axes meet
HIPS = [COCO17.index("left_hip"), COCO17.index("right_hip")]
EYES = [COCO17.index("left_eye"), COCO17.index("right_eye")]


def triangulated_errors(rig, errors, frames=40):
    """(F, J, 3) triangulated minus true joints of one person walking around the meeting point."""
    script, rng = MotionScript(n_people=1, seed=0, area=(2.0, 2.0)), np.random.default_rng(0)
    out = []
    for t in np.arange(frames) * 0.1:
        truth = script.pose(t) + MEETING_POINT
        points, scores = observe(rig, truth, rng, errors=errors).by_person(1)
        out.append(triangulate(rig, points[:, 0], scores[:, 0]).points - truth[0])
    return np.array(out)


def test_realistic_errors_through_the_real_rig(realdata_demo):
    rig = load_qualisys_rig(realdata_demo("Demo_SinglePerson") / "calibration" / "Calib.qca.txt")
    truth = MotionScript(n_people=1, seed=0, area=(2.0, 2.0)).pose(0.0) + MEETING_POINT
    pixels, _ = project(rig, truth.reshape(-1, 3))
    size = person_size_px(pixels.reshape(len(rig), 1, 17, 2))
    assert np.all((size > 700) & (size < 1000))                           # px: 3-4 m from the cameras

    model = DetectorErrors(swap_rate=0.0, jump_rate=0.0, false_people_rate=0.0, occlusion_rate=0.0)
    clean, realistic = triangulated_errors(rig, "clean"), triangulated_errors(rig, model)
    distance = lambda e: np.nanmean(np.linalg.norm(e, axis=-1), axis=0)
    assert np.nanmean(distance(clean)) < 0.01                               # measured: 0.4 cm
    assert np.nanmean(distance(realistic)) > 2 * np.nanmean(distance(clean))
    assert distance(realistic)[HIPS].mean() > 2 * distance(realistic)[EYES].mean()
    # The hips' mean error over the clip is the person's definition offset: a bias, not noise.
    offsets = model.definition_offsets(1)[0]
    np.testing.assert_allclose(np.nanmean(realistic, axis=0)[HIPS], offsets[HIPS], atol=0.01)
