"""Model vs reference (INT8 vs float): every metric as model - reference in points, per-class deltas worst
first, changed images.

Mean Recall's delta is paired: the model's recall at the reference's F1-optimal confidence minus the
reference's recall there. Each model's own optimum is reported too, but its difference is not the
delta: on a flat F1 curve the optimum wanders, and recall with it, by several points for one model alone.

Heads that differ: a compared model whose output contract differs from the reference's in what decides the
detections (NMS in the graph vs by qharness, i.e. YOLO26's one-to-one head vs its one-to-many one; the class
count; masks) is compared with a note, since its Δ then mixes quantization with another post-processing
(:func:`head_differences`). Box units and layout alone (Ultralytics' INT8 export normalises boxes, the
quantizer's split layout separates them) decode to the same COCO boxes and are not flagged.

"Changed images" is a diff heuristic, not a metric: an image counts as materially changed when the
two models' confident detections (score >= CHANGE_SCORE) do not pair up one-to-one by class at box
IoU >= CHANGE_IOU (greedy by score; IoU from pycocotools). They are ranked by how many confident detections
found no partner (either side), most first: the report's gallery shows the top of that list, the images
where quantization altered most what the model reports.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

CHANGE_SCORE = 0.25
CHANGE_IOU = 0.5
DELTA_KEYS = ("mAP50", "mAP50_95", "mean_recall", "AR100", "AP_small", "AP_medium", "AP_large")


def _pts(a, b) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a) * 100.0, 4)


def metric_deltas(float_metrics: dict, int8_metrics: dict, paired: dict | None = None) -> dict:
    """{iou_type: {metric: points}} plus per-class {iou_type: [{category_id, name, dAP50, dAP50_95}]}.

    Only iou types both sides have are compared (a det model beside a seg model: boxes only). ``paired``
    ({iou_type: {"mean_recall": ...}} at the reference's confidence) makes the Mean Recall delta paired;
    ``mean_recall_own_conf`` keeps the difference of the two models' own optima.
    """
    out: dict = {}
    for iou_type, fm in float_metrics.items():
        im = int8_metrics.get(iou_type)
        if im is None:
            continue
        out[iou_type] = {k: _pts(fm.get(k), im.get(k)) for k in DELTA_KEYS}
        pr = (paired or {}).get(iou_type)
        if pr is not None:
            out[iou_type]["mean_recall_own_conf"] = out[iou_type]["mean_recall"]
            out[iou_type]["mean_recall"] = _pts(fm.get("mean_recall"), pr.get("mean_recall"))
            out[iou_type]["mean_recall_paired_conf"] = pr.get("conf")
        rows = []
        for cid, fc in fm["per_class"].items():
            ic = im["per_class"].get(cid, {})
            rows.append({"category_id": int(cid), "name": fc.get("name"), "n_gt": fc.get("n_gt"),
                         "dAP50": _pts(fc.get("AP50"), ic.get("AP50")),
                         "dAP50_95": _pts(fc.get("AP50_95"), ic.get("AP50_95"))})
        rows.sort(key=lambda r: (r["dAP50_95"] is None, r["dAP50_95"] if r["dAP50_95"] is not None else 0,
                                 r["category_id"]))
        out[iou_type]["per_class"] = rows
    return out


def _head(c) -> str:
    from validator.decode.contract import ContractKind

    if c.kind is ContractKind.END2END:
        return f"NMS in the graph (end-to-end head, {c.num_anchors} rows)"
    if c.kind is ContractKind.SSD:
        return f"NMS in the graph (SSD postprocess, {c.num_anchors} rows)"
    return f"NMS by qharness (one-to-many head, {c.num_anchors} anchors)"


def head_differences(ref, model, units: tuple[str | None, str | None] = (None, None)) -> dict | None:
    """What differs between two models' output contracts (:class:`validator.decode.contract.Contract`) in a
    way that changes what is compared, or None. See the module docstring. ``units``: the box units each
    model's outputs were read in (decided from the outputs when the contract says auto)."""
    from validator.decode.contract import ContractKind

    if ref is None or model is None:
        return None
    in_graph = {ContractKind.END2END, ContractKind.SSD}
    diffs = []
    if (ref.kind in in_graph) != (model.kind in in_graph) or (ref.kind in in_graph and ref.kind != model.kind):
        diffs.append(f"post-processing: reference {_head(ref)}, model {_head(model)}")
    if ref.num_classes and model.num_classes and ref.num_classes != model.num_classes:
        diffs.append(f"classes: reference {ref.num_classes}, model {model.num_classes}")
    if bool(ref.num_masks) != bool(model.num_masks):
        diffs.append(f"masks: reference {'has' if ref.num_masks else 'has none'}, model "
                     f"{'has' if model.num_masks else 'has none'} (boxes compared only)")
    if not diffs:
        return None
    fmt = tuple(f"{c.box_format.value} {u or c.boxes.value}" for c, u in zip((ref, model), units, strict=True))
    if fmt[0] != fmt[1]:
        diffs.append(f"boxes: reference {fmt[0]}, model {fmt[1]} (decoded to the same COCO boxes)")
    advice = ("compare like with like: export both models with the same head (Ultralytics 8.4: its INT8 LiteRT "
              "export is always one-to-many; the default ONNX export is one-to-many too, decoded and NMS'd here "
              "as the INT8 model is, while nms=False gives the end-to-end head; or validate the INT8 model against "
              "the float LiteRT export of the same head, format=litert without quantize)"
              if diffs[0].startswith("post-processing") else
              "compare like with like: validate models exported from the same head and class list")
    return {"differences": diffs, "reference_contract": ref.describe(), "model_contract": model.describe(),
            "advice": advice}


def _by_image(c: dict) -> dict[int, np.ndarray]:
    """Row indices of each image's detections, best score first (stable)."""
    if not len(c["score"]):
        return {}
    order = np.lexsort((np.arange(len(c["score"])), -c["score"], c["image_id"]))
    img = c["image_id"][order]
    cuts = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])
    return {int(img[a]): order[a:b] for a, b in zip(cuts, np.r_[cuts[1:], len(img)], strict=True)}


def changed_images(float_preds: dict, int8_preds: dict, image_ids: list[int]) -> dict:
    """Images whose confident detections differ (see the module docstring). Inputs are the compact arrays
    of :func:`validator.predictions.compact` (image_id, category_id, score, bbox), at score >=
    CHANGE_SCORE already or not: lower scores are dropped here."""
    a, b = ({k: v[c["score"] >= CHANGE_SCORE] for k, v in c.items()} for c in (float_preds, int8_preds))
    ga, gb = _by_image(a), _by_image(b)
    magnitude: dict[int, int] = {}
    for iid in image_ids:
        ia, ib = ga.get(iid, np.zeros(0, np.intp)), gb.get(iid, np.zeros(0, np.intp))
        if not len(ia) and not len(ib):
            continue
        matched = 0
        if len(ia) and len(ib):
            iou = np.asarray(mask_utils.iou(a["bbox"][ia].tolist(), b["bbox"][ib].tolist(), [0] * len(ib)))
            iou = iou.reshape(len(ia), len(ib))
            cat_b = b["category_id"][ib]
            used = np.zeros(len(ib), bool)
            for i, cat in enumerate(a["category_id"][ia]):
                cand = np.flatnonzero(~used & (cat_b == cat) & (iou[i] >= CHANGE_IOU))
                if len(cand):
                    used[cand[np.argmax(iou[i, cand])]] = True
                    matched += 1
        unpaired = (len(ia) - matched) + (len(ib) - matched)
        if unpaired:
            magnitude[iid] = unpaired
    ranked = sorted(magnitude, key=lambda i: (-magnitude[i], i))
    return {"count": len(ranked), "of": len(image_ids), "score_threshold": CHANGE_SCORE,
            "iou_threshold": CHANGE_IOU, "order": "most unpaired confident detections first",
            "image_ids": ranked[:100], "unpaired": [magnitude[i] for i in ranked[:100]]}
