"""Output-contract identification from shapes/dtypes, and box-unit detection on grid-anchored outputs.

Anchor counts used below, worked out by hand for strides 8/16/32:
  256x256: 32*32 + 16*16 + 8*8 = 1344      640x640: 80*80 + 40*40 + 20*20 = 8400
  256x320 (h x w): 32*40 + 16*20 + 8*10 = 1680
Prototypes sit at input/4: 64x64 for a 256x256 input.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from validator.decode.contract import (
    BoxFormat,
    BoxUnits,
    Contract,
    ContractError,
    ContractKind,
    TensorSpec,
    anchor_counts,
    identify,
    resolve_box_units,
)

HW = (256, 256)
N = 1344


def spec(name, *shape, dtype="float32"):
    return TensorSpec(name, tuple(shape), dtype)


def test_anchor_counts_by_hand():
    assert anchor_counts((256, 256))[0] == 1344
    assert anchor_counts((640, 640))[0] == 8400
    assert anchor_counts((256, 320))[0] == 1680
    # P3-P6 adds (640/64)^2 = 100
    assert anchor_counts((640, 640))[1] == 8500


# ---------------------------------------------------------------------------------------- monolithic
def test_monolithic_detect():
    c = identify([spec("output0", 1, 7, N)], HW)
    assert c.kind is ContractKind.YOLO
    assert (c.num_classes, c.num_masks, c.transposed) == (3, 0, False)
    assert c.roles == {"preds": "output0"}
    assert c.box_format is BoxFormat.CXCYWH
    assert c.boxes is BoxUnits.AUTO
    assert c.num_anchors == N


def test_monolithic_transposed():
    c = identify([spec("Identity", 1, N, 7)], HW)
    assert c.kind is ContractKind.YOLO and c.transposed and c.num_classes == 3


def test_monolithic_640_coco():
    c = identify([spec("output0", 1, 84, 8400)], (640, 640))
    assert (c.num_classes, c.num_anchors) == (80, 8400)


def test_monolithic_non_square_input():
    c = identify([spec("output0", 1, 10, 1680)], (256, 320))
    assert c.num_classes == 6 and not c.transposed


def test_monolithic_seg_nchw_protos():
    c = identify([spec("output0", 1, 39, N), spec("output1", 1, 32, 64, 64)], HW)
    assert c.kind is ContractKind.YOLO
    assert (c.num_classes, c.num_masks, c.protos_nhwc) == (3, 32, False)
    assert c.roles == {"preds": "output0", "protos": "output1"}


def test_monolithic_seg_nhwc_protos_transposed():
    c = identify([spec("a", 1, 64, 64, 32), spec("b", 1, N, 39)], HW)
    assert (c.num_classes, c.num_masks, c.protos_nhwc, c.transposed) == (3, 32, True, True)
    assert c.roles == {"preds": "b", "protos": "a"}


def test_int8_outputs_are_accepted():
    c = identify([TensorSpec("q", (1, 7, N), "int8", 0.0039, -128)], HW)
    assert c.kind is ContractKind.YOLO and c.num_classes == 3


def test_dynamic_batch_read_as_one():
    c = identify([spec("output0", -1, 7, N)], HW)
    assert c.num_classes == 3


def test_names_are_not_used():
    """Misleading names change nothing: the roles follow the shapes."""
    a = identify([spec("boxes", 1, 3, N), spec("scores", 1, 4, N)], HW)
    assert a.roles == {"boxes": "scores", "scores": "boxes"}
    assert a.num_classes == 3


# ---------------------------------------------------------------------------------------- split
def test_split_detect_any_order():
    for outs in ([spec("x", 1, 4, N), spec("y", 1, 3, N)], [spec("y", 1, 3, N), spec("x", 1, 4, N)]):
        c = identify(outs, HW)
        assert c.kind is ContractKind.YOLO_SPLIT
        assert c.roles == {"boxes": "x", "scores": "y"}
        assert (c.num_classes, c.num_masks, c.transposed) == (3, 0, False)


def test_split_transposed():
    c = identify([spec("x", 1, N, 4), spec("y", 1, N, 6)], HW)
    assert c.kind is ContractKind.YOLO_SPLIT and c.transposed and c.num_classes == 6


def test_split_seg_with_coefs():
    outs = [spec("p", 1, 32, 64, 64), spec("c", 1, 32, N), spec("s", 1, 80, N), spec("b", 1, 4, N)]
    c = identify(outs, HW)
    assert c.kind is ContractKind.YOLO_SPLIT
    assert c.roles == {"boxes": "b", "scores": "s", "coefs": "c", "protos": "p"}
    assert (c.num_classes, c.num_masks) == (80, 32)


def test_split_seg_nhwc_transposed():
    outs = [spec("p", 1, 64, 64, 32), spec("c", 1, N, 32), spec("s", 1, N, 5), spec("b", 1, N, 4)]
    c = identify(outs, HW)
    assert c.transposed and c.protos_nhwc and c.num_classes == 5


# ---------------------------------------------------------------------------------------- end2end / ssd
def test_end2end_detect():
    c = identify([spec("output0", 1, 300, 6)], HW)
    assert c.kind is ContractKind.END2END
    assert c.box_format is BoxFormat.XYXY
    assert (c.num_classes, c.num_masks, c.num_anchors) == (0, 0, 300)
    assert identify([spec("output0", 1, 300, 6)], HW, num_classes=3).num_classes == 3


def test_end2end_seg():
    c = identify([spec("output0", 1, 300, 38), spec("output1", 1, 32, 64, 64)], HW)
    assert c.kind is ContractKind.END2END and c.num_masks == 32
    assert c.roles == {"preds": "output0", "protos": "output1"}


def test_ssd():
    outs = [spec("TFLite_Detection_PostProcess", 1, 10, 4), spec("TFLite_Detection_PostProcess:1", 1, 10),
            spec("TFLite_Detection_PostProcess:2", 1, 10), spec("TFLite_Detection_PostProcess:3", 1)]
    c = identify(outs, (300, 300))
    assert c.kind is ContractKind.SSD
    assert c.boxes is BoxUnits.NORMALIZED and c.box_format is BoxFormat.YXYX
    assert c.roles == {"boxes": "TFLite_Detection_PostProcess", "classes": "TFLite_Detection_PostProcess:1",
                       "scores": "TFLite_Detection_PostProcess:2", "count": "TFLite_Detection_PostProcess:3"}
    assert c.class_offset == 0 and c.num_anchors == 10


def test_ssd_integer_classes_dtype_decides():
    outs = [spec("a", 1, 10), spec("b", 1, 10, dtype="int32"), spec("boxes", 1, 10, 4), spec("n", 1)]
    c = identify(outs, (300, 300))
    assert c.roles["classes"] == "b" and c.roles["scores"] == "a"


def test_ssd_without_count():
    c = identify([spec("b", 1, 25, 4), spec("c", 1, 25), spec("s", 1, 25)], (320, 320))
    assert c.kind is ContractKind.SSD and "count" not in c.roles


# ---------------------------------------------------------------------------------------- units, describe
def test_boxes_override_and_validation():
    assert identify([spec("o", 1, 7, N)], HW, boxes="normalized").boxes is BoxUnits.NORMALIZED
    assert identify([spec("o", 1, 7, N)], HW, boxes="pixels").boxes == "pixels"
    with pytest.raises(ValueError, match="boxes must be"):
        identify([spec("o", 1, 7, N)], HW, boxes="inches")


def test_contract_describe_hash_and_replace():
    c = identify([spec("output0", 1, 39, N), spec("output1", 1, 32, 64, 64)], HW)
    line = c.describe()
    assert "\n" not in line and "nc=3" in line and "32 masks" in line and "NCHW" in line
    fixed = dataclasses.replace(c, boxes="pixels")
    assert fixed.boxes is BoxUnits.PIXELS
    assert len({c, dataclasses.replace(c)}) == 1


# ---------------------------------------------------------------------------------------- errors
def _error(outs, hw=HW, **kw) -> str:
    with pytest.raises(ContractError) as e:
        identify(outs, hw, model_name="m.tflite", **kw)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("cannot identify the output contract of m.tflite: outputs ")
    for o in outs:  # every tensor is listed with its shape and dtype
        assert f"{o.name}[{','.join(map(str, o.shape))}] {o.dtype}" in msg
    return msg


def test_unknown_single_tensor():
    msg = _error([spec("out", 1, 5, 100)])
    assert "anchor count" in msg


def test_unknown_set():
    _error([spec("a", 1, 10), spec("b", 1, 20), spec("c", 1, 7, N)])
    _error([spec("a", 1, 7, N), spec("b", 1, 7, N), spec("c", 1, 7, N), spec("d", 1, 7, N)])


def test_no_outputs():
    with pytest.raises(ContractError, match="no outputs"):
        identify([], HW)


def test_split_ambiguous_when_classes_equal_box_channels():
    msg = _error([spec("a", 1, 4, N), spec("b", 1, 4, N)])
    assert "box tensor" in msg


def test_split_ambiguous_when_classes_equal_mask_channels():
    msg = _error([spec("b", 1, 4, N), spec("s", 1, 32, N), spec("c", 1, 32, N), spec("p", 1, 32, 64, 64)])
    assert "coefficient" in msg


def test_split_mixed_layouts():
    msg = _error([spec("b", 1, 4, N), spec("s", 1, N, 3)])
    assert "mix" in msg


def test_split_coefs_without_protos():
    _error([spec("b", 1, 4, N), spec("s", 1, 3, N), spec("c", 1, 32, N)])


def test_yolo_or_end2end_is_ambiguous():
    # [1,1344,6]: a transposed YOLO head with 2 classes, or 1344 end-to-end rows
    msg = _error([spec("o", 1, N, 6)])
    assert "both" in msg


def test_two_prototype_tensors():
    _error([spec("o", 1, 39, N), spec("p", 1, 32, 64, 64), spec("q", 1, 32, 64, 64)])


def test_prototypes_of_wrong_size():
    msg = _error([spec("o", 1, 39, N), spec("p", 1, 32, 80, 80)])
    assert "64x64" in msg


def test_prototype_layout_ambiguous():
    # input 128 -> protos 32x32; 32 channels: [1,32,32,32] is NCHW and NHWC at once
    _error([spec("o", 1, 39, 336), spec("p", 1, 32, 32, 32)], hw=(128, 128))


def test_ssd_with_protos_is_unknown():
    _error([spec("b", 1, 10, 4), spec("c", 1, 10), spec("s", 1, 10), spec("p", 1, 32, 64, 64)])


def test_dynamic_and_batch_dims():
    _error([spec("o", 1, -1, N)])
    _error([spec("o", 2, 7, N)])
    _error([spec("o", 1, 7, N, dtype="bool")])


def test_class_count_mismatch_names_both_counts():
    msg = _error([spec("output0", 1, 7, N)], num_classes=6)
    assert "3" in msg and "6" in msg and "mismatch" in msg
    msg = _error([spec("output0", 1, 39, N), spec("p", 1, 32, 64, 64)], num_classes=80)
    assert " 3 classes" in msg and "80" in msg
    msg = _error([spec("b", 1, 4, N), spec("s", 1, 80, N)], num_classes=3)
    assert "80" in msg and " 3 " in msg


def test_seg_head_without_protos_is_a_class_mismatch():
    # 39 channels and 3 dataset classes: 32 channels are unexplained without prototypes
    msg = _error([spec("output0", 1, 39, N)], num_classes=3)
    assert "35" in msg and "3" in msg


def test_num_classes_consistent_is_accepted():
    assert identify([spec("output0", 1, 7, N)], HW, num_classes=3).num_classes == 3


# ---------------------------------------------------------------------------------------- box units
def _grid_centres(hw):
    """Anchor points (cell centres) of strides 8/16/32 in the Ultralytics order: stride-major, row-major."""
    h, w = hw
    pts = []
    for s in (8, 16, 32):
        ys, xs = np.meshgrid(np.arange(h // s) + 0.5, np.arange(w // s) + 0.5, indexing="ij")
        pts.append(np.stack([xs.ravel() * s, ys.ravel() * s], 1))
    return np.concatenate(pts).astype(np.float32)


def _monolithic(hw, normalized, transposed=False, nc=3, seed=0):
    """Grid-anchored head output: centres = anchor points + small offsets, random sizes, zero scores."""
    rng = np.random.default_rng(seed)
    c = _grid_centres(hw)
    n = len(c)
    a = np.zeros((4 + nc, n), np.float32)
    a[:2] = (c + rng.uniform(-4, 4, c.shape)).T
    a[2:4] = rng.uniform(4, 60, (2, n))
    if normalized:
        a[[0, 2]] /= hw[1]
        a[[1, 3]] /= hw[0]
    return (a.T if transposed else a)[None]


@pytest.mark.parametrize("transposed", [False, True])
def test_box_units_monolithic(transposed):
    shape = (1, N, 7) if transposed else (1, 7, N)
    c = identify([spec("o", *shape)], HW)
    assert resolve_box_units(c, {"o": _monolithic(HW, False, transposed)}, HW) is BoxUnits.PIXELS
    assert resolve_box_units(c, {"o": _monolithic(HW, True, transposed)}, HW) is BoxUnits.NORMALIZED


def test_box_units_split_non_square():
    hw = (256, 320)
    c = identify([spec("b", 1, 4, 1680), spec("s", 1, 3, 1680)], hw)
    for normalized, expected in ((False, BoxUnits.PIXELS), (True, BoxUnits.NORMALIZED)):
        a = _monolithic(hw, normalized)
        outs = {"b": a[:, :4], "s": a[:, 4:]}
        assert resolve_box_units(c, outs, hw) is expected


def test_box_units_fixed_contract_unchanged():
    c = identify([spec("o", 1, 7, N)], HW, boxes="pixels")
    assert resolve_box_units(c, {"o": _monolithic(HW, True)}, HW) is BoxUnits.PIXELS


def test_box_units_end2end():
    c = identify([spec("o", 1, 5, 6)], HW)
    rows = np.zeros((1, 5, 6), np.float32)
    assert resolve_box_units(c, {"o": rows}, HW) is BoxUnits.AUTO  # nothing detected: undecided
    rows[0, 0] = (10, 20, 30, 40, 0.9, 1)
    assert resolve_box_units(c, {"o": rows}, HW) is BoxUnits.PIXELS
    rows[0, 0, :4] /= 256
    assert resolve_box_units(c, {"o": rows}, HW) is BoxUnits.NORMALIZED


def test_box_units_ssd_always_normalized():
    c = identify([spec("b", 1, 10, 4), spec("c", 1, 10), spec("s", 1, 10), spec("n", 1)], HW)
    assert resolve_box_units(c, {}, HW) is BoxUnits.NORMALIZED


def test_contract_from_strings():
    c = Contract("yolo", 3, 0, {"preds": "o"}, False, False, "auto", "cxcywh")
    assert c.kind is ContractKind.YOLO and c.boxes is BoxUnits.AUTO and c.box_format is BoxFormat.CXCYWH


def test_anchor_counts_for_inputs_not_a_multiple_of_32():
    """Strided 3x3 convolutions with padding 1 give ceil(h / 2) per stage, so a 250 x 330 input has
    ceil(250/8) x ceil(330/8) + ceil(250/16) x ceil(330/16) + ceil(250/32) x ceil(330/32) anchors."""
    assert anchor_counts((250, 330))[0] == 32 * 42 + 16 * 21 + 8 * 11 == 1768
    assert anchor_counts((250, 330))[1] == 1768 + 4 * 6  # P6: ceil(250/64) x ceil(330/64)
    assert anchor_counts((100, 100))[0] == 13 * 13 + 7 * 7 + 4 * 4
