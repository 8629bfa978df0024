"""decode_columns refuses clouds that do not add up, one clear line each, and leaks no numpy warnings."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from hpe_ros.io.pose_cloud import (
    FLOAT32,
    FLOATS,
    INT32,
    POSE_2D_FIELDS,
    CloudLayout,
    decode_columns,
    pack_columns,
    packed_dtype,
)

REQUIRED = {"u": FLOATS, "v": FLOATS, "confidence": FLOATS}


def pose2d_layout(persons=2, joints=17, big_endian=False, flag=None) -> CloudLayout:
    """A pose_2d cloud like the encoder writes; `flag` overrides is_bigendian (a lying publisher)."""
    rng = np.random.default_rng(0)
    columns = {"u": rng.uniform(10, 630, (persons, joints)), "v": rng.uniform(10, 470, (persons, joints)),
               "confidence": rng.uniform(0.2, 1.0, (persons, joints)),
               "person": np.repeat(np.arange(persons)[:, None], joints, 1),
               "joint": np.broadcast_to(np.arange(joints), (persons, joints))}
    dtype = packed_dtype(POSE_2D_FIELDS, big_endian)
    packed = pack_columns(POSE_2D_FIELDS, columns, (persons, joints)).astype(dtype)
    fields = tuple((name, dtype.fields[name][1], datatype, 1) for name, datatype in POSE_2D_FIELDS)
    return CloudLayout(fields, persons, joints, dtype.itemsize, dtype.itemsize * joints,
                       big_endian if flag is None else flag, packed.tobytes())


def with_(cloud: CloudLayout, **changes) -> CloudLayout:
    return CloudLayout(**{**cloud.__dict__, **changes})


def decode(cloud):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any numpy RuntimeWarning fails the test
        return decode_columns("pose_2d", cloud, REQUIRED)


def test_good_clouds_decode_in_either_byte_order():
    little, big = decode(pose2d_layout()), decode(pose2d_layout(big_endian=True))
    for name in REQUIRED:
        np.testing.assert_array_equal(little[name], big[name])
    assert set(little) == {"u", "v", "confidence", "joint"}  # joint is read to be checked


def test_empty_cloud_decodes():
    out = decode(pose2d_layout(persons=0))
    assert out["u"].shape == (0, 17)


def test_duplicated_field_is_rejected():
    cloud = pose2d_layout()
    with pytest.raises(ValueError, match="pose_2d cloud: field 'u' appears twice"):
        decode(with_(cloud, fields=cloud.fields + (("u", 0, FLOAT32, 1),)))


def test_overlapping_fields_are_rejected():
    cloud = pose2d_layout()
    fields = (("u", 0, FLOAT32, 1), ("v", 2, FLOAT32, 1)) + cloud.fields[2:]
    with pytest.raises(ValueError, match="fields 'u' and 'v' overlap"):
        decode(with_(cloud, fields=fields))


@pytest.mark.parametrize("changes, message", [
    ({"point_step": 16}, "overruns point_step 16"),
    ({"row_step": 20 * 16}, r"row_step 320 < point_step 20 \* width 17"),
    ({"height": 3}, "data has 680 bytes; expected row_step \\* height"),
])
def test_sizes_that_disagree_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        decode(with_(pose2d_layout(), **changes))


def test_truncated_data_is_rejected():
    cloud = pose2d_layout()
    with pytest.raises(ValueError, match="data has 673 bytes"):
        decode(with_(cloud, data=cloud.data[:-7]))


def test_wrong_datatype_and_unknown_datatype_are_rejected():
    cloud = pose2d_layout()
    with pytest.raises(ValueError, match="field 'u' has datatype INT32"):
        decode(with_(cloud, fields=(("u", 0, INT32, 1),) + cloud.fields[1:]))
    with pytest.raises(ValueError, match="field 'u' has unknown datatype 42"):
        decode(with_(cloud, fields=(("u", 0, 42, 1),) + cloud.fields[1:]))


@pytest.mark.parametrize("big_endian", [False, True])
def test_a_lying_byte_order_flag_is_rejected_without_warnings(big_endian):
    with pytest.raises(ValueError, match="wrong is_bigendian"):
        decode(pose2d_layout(big_endian=big_endian, flag=not big_endian))


def test_inf_is_rejected_and_nan_is_a_missing_joint():
    cloud = pose2d_layout(persons=1, joints=3)
    packed = np.frombuffer(cloud.data, dtype=packed_dtype(POSE_2D_FIELDS)).copy()
    packed["u"][1] = np.nan
    out = decode(with_(cloud, data=packed.tobytes()))
    assert np.isnan(out["u"][0, 1])
    packed["v"][2] = np.inf
    with pytest.raises(ValueError, match="pose_2d cloud: v is infinite"):
        decode(with_(cloud, data=packed.tobytes()))


def test_impossible_values_are_rejected_and_absurd_but_finite_pixels_pass():
    cloud = pose2d_layout(persons=1, joints=3)
    packed = np.frombuffer(cloud.data, dtype=packed_dtype(POSE_2D_FIELDS)).copy()
    packed["u"][0] = 3e20  # an outlier for fusion to deal with, not a malformed cloud
    assert decode(with_(cloud, data=packed.tobytes()))["u"][0, 0] == np.float32(3e20)
    packed["u"][0] = 1e-35  # what a float read in the wrong byte order looks like
    with pytest.raises(ValueError, match="u has impossible values"):
        decode(with_(cloud, data=packed.tobytes()))
    packed["u"][0], packed["confidence"][1] = 100.0, 5e3
    with pytest.raises(ValueError, match="confidence has impossible values"):
        decode(with_(cloud, data=packed.tobytes()))


def test_joint_index_outside_the_row_is_rejected():
    cloud = pose2d_layout(persons=1, joints=3)
    packed = np.frombuffer(cloud.data, dtype=packed_dtype(POSE_2D_FIELDS)).copy()
    packed["joint"][2] = 7
    with pytest.raises(ValueError, match=r"joint field outside 0..2"):
        decode(with_(cloud, data=packed.tobytes()))
