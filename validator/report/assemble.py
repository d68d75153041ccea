"""What report.html shows, gathered from a finished run (the page itself is :mod:`validator.report.html`).

Everything comes from what the run already has: the summary and timing, each evaluation's interpolated
precision curves, the scores in each model's results file, and for the gallery the images whose confident
detections changed most between the reference and a compared model (``deltas[*].changed_images``, ranked),
with every model's detections and the ground truth on them. Scores and image ids come from each source's compact arrays
(made when the metrics read its results file); only the gallery's lines are parsed again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GALLERY = 12


def _gallery_ids(summary: dict, sources) -> list[int]:
    ids: list[int] = []
    for d in summary.get("deltas", []):
        ids += [i for i in d.get("changed_images", {}).get("image_ids", []) if i not in ids]
    if ids or not sources:
        return ids[:GALLERY]
    # one model alone: the images with the most confident detections
    c = sources[0].compact
    c = {k: v[c["score"] >= 0.25] for k, v in c.items()}
    if not len(c["image_id"]):
        return []
    u, n = np.unique(c["image_id"], return_counts=True)
    order = sorted(range(len(u)), key=lambda k: (-int(n[k]), int(u[k])))
    return [int(u[k]) for k in order[:GALLERY]]


def report_data(summary: dict, timing: dict, table_md: str, results: dict, sources, ds, *, verdict=None,
                gate_markdown: str | None = None, history: dict | None = None,
                diagnostics: dict | None = None) -> dict:
    """The ``data`` of :func:`validator.report.html.render_report` for this run."""
    from validator.predictions import read_rows

    curves = {name: {t: r.curves for t, r in res.items() if r.curves is not None} for name, res in results.items()}
    scores = {s.name: s.compact["score"] for s in sources}
    ids = _gallery_ids(summary, sources)
    wanted = np.asarray(ids, np.int64)
    records = {r.id: r for r in ds.images}
    per_model: dict[str, dict[int, list]] = {}
    for s in sources:  # only the gallery images' confident detections are parsed again
        c = s.compact
        rows = np.flatnonzero(np.isin(c["image_id"], wanted) & (c["score"] >= 0.25))
        got: dict[int, list] = {}
        for _, d in sorted(read_rows(s.predictions_path, rows.tolist()).items()):
            got.setdefault(d["image_id"], []).append(
                {k: d.get(k) for k in ("bbox", "category_id", "score", "segmentation")})
        per_model[s.name] = got
    gt: dict[int, list] = {}
    for a in ds.gt["annotations"]:
        if a["image_id"] in wanted:
            gt.setdefault(a["image_id"], []).append(
                {"bbox": a["bbox"], "category_id": a["category_id"], "segmentation": a.get("segmentation")})
    gallery = []
    for iid in ids:
        rec = records.get(iid)
        if rec is None:
            continue
        gallery.append({"image_id": iid, "file_name": rec.file_name, "path": str(Path(rec.path)),
                        "width": rec.width, "height": rec.height, "gt": gt.get(iid, []),
                        "models": {name: got.get(iid, []) for name, got in per_model.items()}})
    return {"summary": summary, "timing": timing, "table_md": table_md, "curves": curves, "scores": scores,
            "gallery": gallery, "gate": verdict.to_dict() if verdict is not None else None,
            "gate_markdown": gate_markdown, "history": history, "diagnostics": diagnostics,
            "sizes": {s.name: Path(s.path).stat().st_size for s in sources if s.kind == "model"}}
