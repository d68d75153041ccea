"""The detection metric of a model made in memory, on a small split: what layer sensitivity is judged by.

The same path as ``validate`` (sources, inference schedule, decoding, COCO evaluation), without the output
folder or the cache: a candidate model lives for one score.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from validator.data.coco import Dataset


class Scorer:
    """``scorer(model_bytes) -> mAP@0.5:0.95 (boxes, in points)`` on ``ds`` under ``settings``."""

    def __init__(self, ds: Dataset, settings, suffix: str = ".tflite", metric: str = "mAP50_95"):
        self.ds, self.settings, self.suffix, self.metric = ds, settings, suffix, metric
        self.dir = Path(tempfile.mkdtemp(prefix="qharness-score-"))
        self.calls = 0

    def __call__(self, model: bytes) -> float:
        return self.metrics(model)[self.metric]

    def metrics(self, model: bytes, suffix: str | None = None) -> dict:
        """``{mAP50_95, mAP50 (boxes, points), [mask_mAP50_95, mask_mAP50], ms_per_image (inference only,
        this machine's CPU)}`` of ``model`` (bytes of a .tflite, or of ``suffix``) on the dataset."""
        from validator.inference import run_models
        from validator.predictions import PredictionWriter
        from validator.run import _evaluate
        from validator.sources import ModelSpec, open_sources

        self.calls += 1
        path = self.dir / f"candidate{self.calls}{suffix or self.suffix}"
        path.write_bytes(model)
        try:
            (src,) = open_sources([ModelSpec(path, "auto")], [], self.ds, self.settings, None, None)
            src.predictions_path = self.dir / f"candidate{self.calls}.json"
            w = PredictionWriter(src.predictions_path)
            run_models([src], self.ds, self.settings, 1, {src.name: w}, quiet=True)
            w.close()
            res = _evaluate(src, self.ds, self.settings)
            out = {k: round(float(res["bbox"].stats[k]) * 100, 4) for k in ("mAP50_95", "mAP50")}
            if "segm" in res:
                out.update({f"mask_{k}": round(float(res["segm"].stats[k]) * 100, 4) for k in ("mAP50_95", "mAP50")})
            n = max(int(src.timing.get("images") or len(self.ds.images)), 1)
            out["ms_per_image"] = round(float(src.timing.get("inference_s", 0.0)) * 1000 / n, 2)
            return out
        finally:
            for p in (path, self.dir / f"candidate{self.calls}.json"):
                p.unlink(missing_ok=True)

    def close(self) -> None:
        for p in self.dir.iterdir():
            p.unlink(missing_ok=True)
        self.dir.rmdir()
