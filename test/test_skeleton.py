import numpy as np
import pytest

from hpe_ros.skeleton import LAYOUTS, convert, convert_scores, get_layout, mapping


@pytest.mark.parametrize("name,joints", [("coco17", 17), ("halpe26", 26), ("body25", 25), ("body25b", 25),
                                         ("h36m17", 17), ("blazepose33", 33)])
def test_layout_sizes_and_bones_form_a_tree(name, joints):
    layout = get_layout(name)
    assert layout.num_joints == joints
    # Bones connect every joint into one component (a skeleton, not loose points).
    parent = list(range(joints))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in layout.bones:
        parent[find(a)] = find(b)
    assert len({find(i) for i in range(joints)}) == 1


def test_aliases_and_unknown():
    assert get_layout("BODY_25") is get_layout("body25")
    assert get_layout("coco").name == "coco17"
    with pytest.raises(KeyError, match="unknown layout"):
        get_layout("nope")


def test_openpose_body25_order():
    b = get_layout("body25")
    assert b.joint_names[:9] == ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
                                 "left_elbow", "left_wrist", "mid_hip")
    assert b.index("left_heel") == 21


def test_convert_coco_to_body25_derives_neck_and_midhip():
    rng = np.random.default_rng(0)
    coco = rng.normal(size=(3, 17, 3))
    c = get_layout("coco17")
    body = convert(coco, "coco17", "body25")
    b = get_layout("body25")
    np.testing.assert_allclose(body[:, b.index("left_wrist")], coco[:, c.index("left_wrist")])
    np.testing.assert_allclose(body[:, b.index("neck")],
                               0.5 * (coco[:, c.index("left_shoulder")] + coco[:, c.index("right_shoulder")]))
    np.testing.assert_allclose(body[:, b.index("mid_hip")], c.hip_centre(coco))
    assert np.isnan(body[:, b.index("left_heel")]).all()  # COCO has no feet


def test_round_trip_through_every_layout_keeps_common_joints():
    rng = np.random.default_rng(1)
    coco = rng.normal(size=(17, 2))
    for name in LAYOUTS:
        back = convert(convert(coco, "coco17", name), name, "coco17")
        a, _ = mapping("coco17", name)
        for j, jn in enumerate(get_layout("coco17").joint_names):
            if get_layout(name).has(jn):
                np.testing.assert_allclose(back[j], coco[j])


def test_h36m_spine_between_pelvis_and_thorax():
    coco = np.random.default_rng(2).normal(size=(17, 3))
    h = convert(coco, "coco17", "h36m17")
    H = get_layout("h36m17")
    np.testing.assert_allclose(h[H.index("spine")], 0.5 * (h[H.index("pelvis")] + h[H.index("thorax")]))
    assert not np.isnan(h).any()


def test_convert_scores_takes_the_weaker_source():
    s = np.linspace(0.1, 0.9, 17)
    out = convert_scores(s, "coco17", "body25")
    c, b = get_layout("coco17"), get_layout("body25")
    assert out[b.index("neck")] == pytest.approx(min(s[c.index("left_shoulder")], s[c.index("right_shoulder")]))
    assert out[b.index("left_heel")] == 0.0


def test_convert_rejects_wrong_joint_count():
    with pytest.raises(ValueError, match=r"coco17 points must have shape \(\.\.\., 17, \?\), got \(5, 2\)"):
        convert(np.zeros((5, 2)), "coco17", "body25")
