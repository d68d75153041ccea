"""Identify a detector's output contract from tensor shapes and dtypes, never from names.

Why shapes only: the same network arrives as ONNX (``output0``), as an Ultralytics LiteRT export
(``Identity``), as an onnx2tf export (``StatefulPartitionedCall:0``) or as a TF-OD-API SSD
(``TFLite_Detection_PostProcess:1``); names and output order are not stable, shapes are. Names are used
only to order tensors deterministically where two have the same shape (SSD classes/scores, resolved
again from values by the SSD decoder).

The key fact for YOLOv8/11 heads: with strides 8, 16, 32 the anchor count is
``N = sum_s ceil(h/s) * ceil(w/s)`` (1344 at 256x256, 8400 at 640x640). The axis of length N is the
anchor axis; the other one is channels (``4 + nc + nm``). A 4-D output is the mask prototypes at 1/4 of
the input resolution.

End-to-end heads (YOLO26 one-to-one, or any model with its NMS/top-k in the graph) give rows: one
``[1, K, 6]`` tensor (x1, y1, x2, y2, score, class), or the same rows split in two (the layout
``quantize --outputs split`` makes, so boxes and scores get int8 scales of their own): boxes ``[1, K, 4]``
(x1, y1, x2, y2) and scores ``[1, K, nc]`` holding each row's score at its class and 0 elsewhere (class =
argmax, score = max), where K is not an anchor count (else the pair is YOLOv8's split head, transposed).
With nc = 4 the two cannot be told apart: a ContractError.

Anything ambiguous or unknown raises :class:`ContractError` (one line listing every tensor seen): a
wrong guess would silently produce a plausible but wrong mAP, which is worse than a clear error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from validator.tensors import TensorSpec

# Anchor strides of the heads we recognise: P3-P5 (every YOLOv8/11 model) and P3-P6 ("-p6" variants).
STRIDE_SETS: tuple[tuple[int, ...], ...] = ((8, 16, 32), (8, 16, 32, 64))
PROTO_STRIDE = 4  # YOLOv8-seg prototypes live on the P3 grid upsampled x2
# Largest |coordinate| still read as normalised: grid-anchored centres reach ~w in pixel models, ~1 in
# normalised ones; boxes of a normalised model may overshoot the canvas a little, hence 1.5, not 1.
NORMALIZED_MAX = 1.5


class ContractKind(str, Enum):
    """Output layouts the decoders understand."""

    YOLO = "yolo"  # one tensor [1, 4+nc(+nm), N] or [1, N, 4+nc(+nm)]; boxes cx,cy,w,h
    YOLO_SPLIT = "yolo_split"  # boxes [1,4,N], scores [1,nc,N], optional coefs [1,nm,N]; or all transposed
    END2END = "end2end"  # [1, K, 6(+nm)] = x1,y1,x2,y2,score,class(,coefs) after the model's own NMS; or split:
    # boxes [1,K,4] x1,y1,x2,y2 and scores [1,K,nc] (a row's score at its class, 0 elsewhere), K no anchor count
    SSD = "ssd"  # TF-OD-API postprocessed: boxes [1,K,4] yxyx normalised, classes [1,K], scores [1,K], count


class BoxUnits(str, Enum):
    """Units of the box coordinates a model emits (AUTO: decide from the first image's values)."""

    PIXELS = "pixels"
    NORMALIZED = "normalized"
    AUTO = "auto"


class BoxFormat(str, Enum):
    CXCYWH = "cxcywh"
    XYXY = "xyxy"
    YXYX = "yxyx"


class ContractError(ValueError):
    """The outputs match no known contract, match several, or disagree with the given class count."""


@dataclass(frozen=True)
class Contract:
    """How to read one model's outputs.

    ``roles`` maps a role (preds, boxes, scores, coefs, protos, classes, count) to a tensor name.
    ``transposed`` means rows are anchors/detections (axis 1), e.g. ``[1, N, C]``; it is always True for
    END2END and SSD, whose rows are detections. ``num_classes`` is 0 when the shapes do not tell and
    none was given (END2END, SSD). ``num_anchors`` is N for YOLO kinds, the row count K otherwise.
    """

    kind: ContractKind
    num_classes: int
    num_masks: int
    roles: dict[str, str]
    transposed: bool
    protos_nhwc: bool
    boxes: BoxUnits
    box_format: BoxFormat
    class_offset: int = 0
    num_anchors: int = 0

    def __post_init__(self) -> None:  # accept plain strings, e.g. dataclasses.replace(c, boxes="pixels")
        object.__setattr__(self, "kind", ContractKind(self.kind))
        object.__setattr__(self, "boxes", BoxUnits(self.boxes))
        object.__setattr__(self, "box_format", BoxFormat(self.box_format))
        object.__setattr__(self, "roles", dict(self.roles))

    def __hash__(self) -> int:  # roles is a dict: hash its items so a Contract can key a cache
        return hash(
            (self.kind, self.num_classes, self.num_masks, tuple(sorted(self.roles.items())), self.transposed,
             self.protos_nhwc, self.boxes, self.box_format, self.class_offset, self.num_anchors)
        )

    @property
    def has_masks(self) -> bool:
        return self.num_masks > 0

    def describe(self) -> str:
        """One line for logs and the run summary."""
        nc = str(self.num_classes) if self.num_classes else "?"
        layout = "rows" if self.transposed else "channels-first"
        if self.kind in (ContractKind.YOLO, ContractKind.YOLO_SPLIT):
            head = f"{self.kind.value} {layout}, {self.num_anchors} anchors"
        else:
            head = f"{self.kind.value}, {self.num_anchors} rows"
        layout_p = "NHWC" if self.protos_nhwc else "NCHW"
        masks = f"{self.num_masks} masks (protos {layout_p})" if self.num_masks else "no masks"
        roles = " ".join(f"{k}={v}" for k, v in sorted(self.roles.items()))
        extra = f", class offset {self.class_offset}" if self.class_offset else ""
        return (f"{head}, nc={nc}, {masks}, boxes {self.box_format.value} {self.boxes.value}{extra} "
                f"[{roles}]")


def anchor_counts(input_hw: tuple[int, int]) -> tuple[int, ...]:
    """Anchor counts of the recognised heads for this input size (P3-P5 first)."""
    h, w = input_hw
    return tuple(sum(math.ceil(h / s) * math.ceil(w / s) for s in strides) for strides in STRIDE_SETS)


def _fail(model_name: str, outputs: Sequence[TensorSpec], why: str) -> ContractError:
    seen = ", ".join(o.describe() for o in outputs) or "none"
    return ContractError(f"cannot identify the output contract of {model_name}: outputs {seen} ({why})")


def _units(boxes: str | BoxUnits | None, default: BoxUnits) -> BoxUnits:
    if boxes is None:
        return default
    try:
        return BoxUnits(boxes)
    except ValueError:
        raise ValueError(f"boxes must be one of pixels, normalized, auto; got {boxes!r}") from None


def identify(
    outputs: Sequence[TensorSpec],
    input_hw: tuple[int, int],
    *,
    num_classes: int | None = None,
    boxes: str | None = None,
    model_name: str = "model",
) -> Contract:
    """Decide the output contract of a model from its output specs and input size.

    ``num_classes`` (from the dataset, ``--names`` or model metadata) disambiguates and is checked
    against the shapes: a mismatch is a ContractError naming both counts. ``boxes`` forces the units
    (``--boxes``); by default YOLO and END2END are "auto" (see :func:`resolve_box_units`) and SSD is
    "normalized".
    """
    outs = list(outputs)

    def fail(why: str) -> ContractError:
        return _fail(model_name, outs, why)

    if not outs:
        raise fail("the model has no outputs")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    # A dynamic batch dimension (-1/0, as ONNX reports a symbolic one) is read as 1: we run batch 1.
    shaped = [replace(o, shape=(1, *o.shape[1:])) if len(o.shape) >= 2 and o.shape[0] < 1 else o
              for o in outs]
    for o in shaped:
        if any((not isinstance(d, (int, np.integer))) or d < 1 for d in o.shape):
            raise fail(f"{o.describe()} has a dynamic or empty dimension; pass concrete shapes "
                       f"(e.g. those of a first inference's outputs)")
        try:
            kind = np.dtype(o.dtype).kind
        except TypeError:
            kind = "?"
        if kind not in "fiu":
            raise fail(f"{o.describe()} is not a numeric tensor")
        if len(o.shape) >= 2 and o.shape[0] != 1:
            raise fail(f"{o.describe()} has batch dimension {o.shape[0]}; a batch of 1 is expected")

    rank4 = [o for o in shaped if len(o.shape) == 4]
    rest = sorted((o for o in shaped if len(o.shape) != 4), key=lambda o: o.name)
    if len(rank4) > 1:
        raise fail("more than one 4-D output; only one prototype tensor is expected")

    protos = rank4[0] if rank4 else None
    nm, nhwc = 0, False
    if protos is not None:
        nm, nhwc = _proto_layout(protos, input_hw, fail)

    anchors = anchor_counts(input_hw)
    rank3 = [o for o in rest if len(o.shape) == 3]
    rank2 = [o for o in rest if len(o.shape) == 2]
    scalars = [o for o in rest if math.prod(o.shape) == 1 and len(o.shape) <= 2]

    # SSD: boxes [1,K,4], two [1,K], optional count of one element; nothing else.
    if len(rank3) == 1 and rank3[0].shape[2] == 4:
        k = rank3[0].shape[1]
        pair = [o for o in rank2 if o.shape == (1, k)]
        counts = [o for o in scalars if o not in pair]
        if len(pair) == 2 and len(counts) <= 1 and len(rest) == 3 + len(counts):
            if protos is not None:
                raise fail("SSD-style outputs with a prototype tensor are not a known contract")
            # Classes/scores have equal shapes: an integer dtype marks classes; otherwise the name order
            # decides provisionally and the SSD decoder corrects it from the values of each image.
            ints = [o for o in pair if np.dtype(o.dtype).kind in "iu"]
            cls_t = ints[0] if len(ints) == 1 else pair[0]
            score_t = pair[1] if cls_t is pair[0] else pair[0]
            roles = {"boxes": rank3[0].name, "classes": cls_t.name, "scores": score_t.name}
            if counts:
                roles["count"] = counts[0].name
            return Contract(ContractKind.SSD, num_classes or 0, 0, roles, True, False,
                            _units(boxes, BoxUnits.NORMALIZED), BoxFormat.YXYX, 0, k)

    if len(rest) != len(rank3):
        raise fail("unexpected 1-D/2-D outputs for a YOLO or end-to-end head; no known contract matches")

    if len(rank3) == 2 and protos is None:
        e2e = _end2end_split(rank3, anchors, num_classes, boxes, fail)
        if e2e is not None:
            return e2e
    if len(rank3) == 1:
        return _single(rank3[0], protos, nm, nhwc, anchors, num_classes, boxes, fail)
    if len(rank3) in (2, 3):
        return _split(rank3, protos, nm, nhwc, anchors, num_classes, boxes, fail)
    raise fail(f"{len(rank3)} 3-D outputs; no known contract has that many")


def _proto_layout(protos: TensorSpec, input_hw: tuple[int, int], fail) -> tuple[int, bool]:
    """(num_masks, nhwc) of a [1,nm,ph,pw] or [1,ph,pw,nm] prototype tensor at input/4."""
    ph, pw = (math.ceil(d / PROTO_STRIDE) for d in input_hw)
    _, a, b, c = protos.shape
    nchw, nhwc = (b, c) == (ph, pw), (a, b) == (ph, pw)
    if nchw and nhwc:
        raise fail(f"prototype layout of {protos.describe()} is ambiguous (NCHW or NHWC)")
    if not (nchw or nhwc):
        raise fail(f"4-D output {protos.describe()} is not a prototype grid of the input/4 size {ph}x{pw}")
    return (a, False) if nchw else (c, True)


def _orient(spec: TensorSpec, anchors: tuple[int, ...]) -> tuple[int, bool, int] | None:
    """(channels, transposed, n_anchors) of a [1,C,N] / [1,N,C] tensor, None if no axis is an anchor count.

    Raises ValueError when both axes are anchor counts (then the layout cannot be told).
    """
    _, a, b = spec.shape
    a_is, b_is = a in anchors, b in anchors
    if a_is and b_is:
        raise ValueError(spec.describe())
    if b_is:
        return a, False, b
    if a_is:
        return b, True, a
    return None


def _check_nc(given: int | None, found: int, what: str, fail) -> int:
    if found < 1:
        raise fail(f"{what} leaves {found} class channels")
    if given is not None and given != found:
        raise fail(f"class count mismatch: the model has {found} classes ({what}) but {given} were given "
                   f"by the dataset/--names/metadata")
    return found


def _single(spec, protos, nm, nhwc, anchors, num_classes, boxes, fail) -> Contract:
    try:
        orient = _orient(spec, anchors)
    except ValueError:
        raise fail(f"both non-batch axes of {spec.describe()} equal an anchor count") from None
    _, k, cols = spec.shape
    e2e = cols == 6 + nm  # end-to-end rows: x1,y1,x2,y2,score,class(,nm coefs)
    if orient is not None and e2e:
        raise fail(f"{spec.describe()} fits both a YOLO head and end-to-end NMS rows")
    roles = {"preds": spec.name}
    if protos is not None:
        roles["protos"] = protos.name
    if orient is not None:
        c, transposed, n = orient
        nc = _check_nc(num_classes, c - 4 - nm,
                       f"{c} channels = 4 box + {c - 4 - nm} class" + (f" + {nm} mask" if nm else ""), fail)
        return Contract(ContractKind.YOLO, nc, nm, roles, transposed, nhwc, _units(boxes, BoxUnits.AUTO),
                        BoxFormat.CXCYWH, 0, n)
    if e2e:
        return Contract(ContractKind.END2END, num_classes or 0, nm, roles, True, nhwc,
                        _units(boxes, BoxUnits.AUTO), BoxFormat.XYXY, 0, k)
    counts = "/".join(str(a) for a in anchors)
    raise fail(f"no axis of {spec.describe()} is an anchor count ({counts} for this input size) and it is "
               f"not [1,K,{6 + nm}] end-to-end rows")


def _end2end_split(specs, anchors, num_classes, boxes, fail) -> Contract | None:
    """Split end-to-end rows: boxes [1,K,4] and scores [1,K,nc] with K not an anchor count; None when the
    shapes are not that (another contract may match)."""
    if len({s.shape[1] for s in specs}) != 1 or 4 not in {s.shape[2] for s in specs}:
        return None
    k = specs[0].shape[1]
    if k in anchors or any(k == s.shape[2] for s in specs):
        return None
    box = [s for s in specs if s.shape[2] == 4]
    if len(box) != 1:
        raise fail(f"end-to-end rows split into two [1,{k},4] tensors: cannot tell the boxes from the scores "
                   "of 4 classes")
    score = next(s for s in specs if s is not box[0])
    nc = _check_nc(num_classes, score.shape[2], f"end-to-end score tensor {score.describe()}", fail)
    return Contract(ContractKind.END2END, nc, 0, {"boxes": box[0].name, "scores": score.name}, True, False,
                    _units(boxes, BoxUnits.AUTO), BoxFormat.XYXY, 0, k)


def end2end_rows(contract: Contract, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """An END2END contract's rows of one image as ``[K, 6(+nm)]`` (x1,y1,x2,y2,score,class(,coefs)), from the
    single rows tensor or from split boxes ``[1,K,4]`` and scores ``[1,K,nc]`` (class = argmax, score = max)."""
    if "preds" in contract.roles:
        return np.asarray(outputs[contract.roles["preds"]])[0]
    b = np.asarray(outputs[contract.roles["boxes"]], np.float32)[0]
    s = np.asarray(outputs[contract.roles["scores"]], np.float32)[0]
    cls = s.argmax(axis=1)
    score = np.take_along_axis(s, cls[:, None], axis=1)
    return np.concatenate([b, score, cls[:, None].astype(np.float32)], axis=1)


def _split(specs, protos, nm, nhwc, anchors, num_classes, boxes, fail) -> Contract:
    oriented = []
    for s in specs:
        try:
            o = _orient(s, anchors)
        except ValueError:
            raise fail(f"both non-batch axes of {s.describe()} equal an anchor count") from None
        if o is None:
            raise fail(f"{s.describe()} has no anchor axis; split YOLO outputs need one on every tensor")
        oriented.append((s, *o))
    if len({t for _, _, t, _ in oriented}) != 1:
        raise fail("split outputs mix [1,C,N] and [1,N,C] layouts")
    if len({n for _, _, _, n in oriented}) != 1:
        raise fail("split outputs disagree on the anchor count")
    transposed, n = oriented[0][2], oriented[0][3]
    if len(specs) == 3 and protos is None:
        raise fail("three split outputs (boxes, scores, coefficients) but no prototype output")
    if len(specs) == 2 and protos is not None:
        raise fail("a prototype output but only two split outputs (mask coefficients missing)")

    box = [s for s, c, _, _ in oriented if c == 4]
    if len(box) != 1:
        raise fail("cannot tell the box tensor (4 channels) from the others" if box
                   else "no split output has 4 box channels")
    others = [(s, c) for s, c, _, _ in oriented if s is not box[0]]
    roles = {"boxes": box[0].name}
    if protos is not None:
        roles["protos"] = protos.name
        coefs = [s for s, c in others if c == nm]
        if len(coefs) != 1:
            raise fail(f"cannot tell the mask-coefficient tensor ({nm} channels) from the scores" if coefs
                       else f"no split output has {nm} channels to match the prototypes")
        roles["coefs"] = coefs[0].name
        others = [(s, c) for s, c in others if s is not coefs[0]]
    score, c = others[0]
    roles["scores"] = score.name
    nc = _check_nc(num_classes, c, f"score tensor {score.describe()}", fail)
    return Contract(ContractKind.YOLO_SPLIT, nc, nm, roles, transposed, nhwc, _units(boxes, BoxUnits.AUTO),
                    BoxFormat.CXCYWH, 0, n)


def _channels(contract: Contract, arr: np.ndarray) -> np.ndarray:
    """A YOLO tensor as [C, N] (a view when possible)."""
    a = arr[0]
    return a.T if contract.transposed else a


def resolve_box_units(
    contract: Contract, outputs: Mapping[str, np.ndarray], input_hw: tuple[int, int]
) -> BoxUnits:
    """Decide "pixels" vs "normalized" for ``boxes="auto"`` from one image's outputs.

    YOLO/YOLO_SPLIT: box centres are grid-anchored (anchor point plus a bounded offset), so over all N
    anchors they span the whole canvas whatever the image shows: max |cx|, |cy| is close to the input
    width/height in a pixel model and ~1 in a normalised one (the Ultralytics INT8 TFLite export has the
    ONNX shapes but [0,1] boxes). Any max <= 1.5 means normalised. END2END: the same rule over the
    coordinates of rows with a positive score; with no such row this image cannot tell and AUTO is
    returned (call again with the next image). SSD boxes are always normalised. A contract whose units
    are already fixed is returned unchanged.
    """
    if contract.boxes is not BoxUnits.AUTO:
        return contract.boxes
    if contract.kind is ContractKind.SSD:
        return BoxUnits.NORMALIZED
    if contract.kind is ContractKind.END2END:
        rows = end2end_rows(contract, outputs)
        rows = rows[rows[:, 4] > 0, :4]
        coords = rows[np.isfinite(rows)]
        if coords.size == 0:
            return BoxUnits.AUTO
        return BoxUnits.NORMALIZED if np.abs(coords).max() <= NORMALIZED_MAX else BoxUnits.PIXELS
    key = "preds" if contract.kind is ContractKind.YOLO else "boxes"
    centres = _channels(contract, outputs[contract.roles[key]])[:2]
    centres = centres[np.isfinite(centres)]
    if centres.size == 0:
        raise ValueError("cannot decide box units: no finite box centre in the outputs")
    return BoxUnits.NORMALIZED if np.abs(centres).max() <= NORMALIZED_MAX else BoxUnits.PIXELS
