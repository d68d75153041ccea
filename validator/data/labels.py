"""Class names: label files in the formats people have, and the map from model class index to dataset category.

Why a module of its own: a wrong class map gives a plausible but wrong mAP (every class scored against
another class's ground truth), and label files come in many shapes. Each format below is read into one
form, ``{model class index: name}``, gaps allowed:

* TFLite / Coral label maps: ``N  name`` per line (index = model class index, gaps allowed, e.g. COCO's
  90-id maps); also ``N: name`` and ``N,name``.
* Plain text: one name per line, line number = class index; an empty line or ``???`` is an unused index
  (TFLite Task Library label files mark gaps so).
* JSON: a list of names, or ``{index: name}``, or an object with a ``names`` entry of either form.
* Ultralytics dataset YAML (``names:`` as a list or ``{index: name}``).
* TF object-detection ``.pbtxt`` label maps (``item { id: N display_name: "name" }``); ids are kept as
  written (1-based for COCO): the model's class index must follow the same numbering.

Model classes are matched to dataset categories by name (exactly, else ignoring case, spaces, ``_`` and
``-`` altogether, so VOC's ``pottedplant`` finds COCO's ``potted plant``). Model classes the dataset does
not have are dropped (their detections too) and counted; dataset categories the model lacks are listed
(their AP is 0 where they have ground truth). Only a map with no overlap at all is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from validator.errors import InputError

GAP_NAMES = ("", "???")
_INDEXED = re.compile(r"^\s*(\d+)(?:\s*[:,]\s*|\s+)(\S.*?)\s*$")


@dataclass(frozen=True)
class Labels:
    """Model class index -> name, and where it came from (for error messages and the summary)."""

    names: dict[int, str]
    source: str

    @property
    def count(self) -> int:
        return max(self.names) + 1 if self.names else 0


def _clean(name) -> str | None:
    if name is None:  # JSON null / YAML ~ or an empty value: an unused index
        return None
    s = str(name).strip()
    return None if s in GAP_NAMES else s


def _from_obj(obj, source: str) -> dict[int, str]:
    if isinstance(obj, dict) and "names" in obj and not all(_is_int(k) for k in obj):
        obj = obj["names"]
    if isinstance(obj, list):
        return {i: n for i, v in enumerate(obj) if (n := _clean(v)) is not None}
    if isinstance(obj, dict):
        if not all(_is_int(k) for k in obj):
            raise InputError(f"{source}: label mapping keys must be class indices, got {list(obj)[:3]}")
        return {int(k): n for k, v in obj.items() if (n := _clean(v)) is not None}
    raise InputError(f"{source}: expected a list of names or an {{index: name}} mapping")


def _is_int(k) -> bool:
    if isinstance(k, bool):
        return False
    if isinstance(k, int):
        return True
    return isinstance(k, str) and re.fullmatch(r"-?\d+", k.strip()) is not None


def _pbtxt(text: str, source: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for block in re.findall(r"item\s*\{(.*?)\}", text, flags=re.S):
        m_id = re.search(r"\bid\s*:\s*(-?\d+)", block)
        m_name = re.search(r"\bdisplay_name\s*:\s*[\"'](.*?)[\"']", block) or \
            re.search(r"\bname\s*:\s*[\"'](.*?)[\"']", block)
        if not m_id or not m_name:
            raise InputError(f"{source}: label map item without id or name: {' '.join(block.split())[:80]}")
        out[int(m_id.group(1))] = m_name.group(1)
    if not out:
        raise InputError(f"{source}: no 'item {{ id: .. name: .. }}' entries in the label map")
    return out


def parse_labels(text: str, source: str, suffix: str = "") -> Labels:
    """Read a label file's text (format detected from its content; ``suffix`` hints YAML)."""
    text = text.lstrip("\ufeff")
    s = text.strip()
    if not s:
        raise InputError(f"{source}: empty label file")
    yaml_hint = suffix.lower() in (".yaml", ".yml")
    if s[0] in "[{" and not yaml_hint and not re.match(r"^item\s*\{", s):
        try:
            names = _from_obj(json.loads(s), source)
        except json.JSONDecodeError as e:
            raise InputError(f"{source}: invalid JSON label file ({e.msg} at line {e.lineno})") from None
    elif re.search(r"^\s*item\s*\{", s, flags=re.M):
        names = _pbtxt(s, source)
    elif yaml_hint or re.search(r"^names\s*:", s, flags=re.M):
        import yaml

        try:
            doc = yaml.safe_load(s)
        except yaml.YAMLError as e:
            raise InputError(f"{source}: invalid YAML ({' '.join(str(e).split())[:120]})") from None
        if not isinstance(doc, dict) or "names" not in doc:
            raise InputError(f"{source}: YAML without a 'names:' entry")
        names = _from_obj(doc["names"], source)
    else:
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        rows = [ln for ln in lines if ln.strip()]
        matches = [_INDEXED.match(ln) for ln in rows]
        if rows and all(matches):
            names = {}
            for ln, m in zip(rows, matches, strict=True):
                i = int(m.group(1))
                if i in names:
                    raise InputError(f"{source}: class index {i} appears twice (line '{ln.strip()}')")
                if (n := _clean(m.group(2))) is not None:
                    names[i] = n
        else:
            names = {i: n for i, ln in enumerate(lines) if (n := _clean(ln)) is not None}
    if not names:
        raise InputError(f"{source}: no class names in the label file")
    if min(names) < 0:
        raise InputError(f"{source}: negative class index {min(names)}")
    return Labels(dict(sorted(names.items())), source)


def read_labels(path: str | Path) -> Labels:
    """``--names FILE`` in any of the formats of the module docstring."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: label file is not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read label file ({e.strerror or e})") from None
    return parse_labels(text, str(p), p.suffix)


# ------------------------------------------------------------------------------------------ class map
def _norm(name: str) -> str:
    """Loose form of a name: case, spaces, ``_`` and ``-`` ignored (VOC's ``pottedplant`` is COCO's
    ``potted plant``, ``traffic_light`` is ``traffic light``)."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@dataclass(frozen=True)
class ClassMap:
    """Model class index -> dataset category id (None: dropped), with what did not line up."""

    category_of: dict[int, int]
    source: str
    dropped: tuple[tuple[int, str], ...] = ()  # model classes without a dataset category
    missing: tuple[tuple[int, str], ...] = ()  # dataset categories no model class maps to
    by_name: bool = False
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> dict:
        return {"source": self.source, "by": "name" if self.by_name else "order",
                "mapped": len(self.category_of),
                "model_classes_dropped": [{"index": i, "name": n} for i, n in self.dropped],
                "dataset_categories_missing": [{"id": c, "name": n} for c, n in self.missing],
                "notes": list(self.notes)}


def _by_name(categories, labels: Labels) -> tuple[dict[int, int], list[tuple[int, str]]]:
    exact = {c["name"]: c["id"] for c in categories}
    loose: dict[str, int] = {}
    for c in categories:
        loose.setdefault(_norm(c["name"]), c["id"])
    mapping, dropped = {}, []
    for i, n in labels.names.items():
        cid = exact.get(n, loose.get(_norm(n)))
        if cid is None:
            dropped.append((i, n))
        else:
            mapping[i] = cid
    return mapping, dropped


def class_map(categories, labels: Labels | None, num_classes: int | None, *, explicit: bool,
              model: str, dataset: str) -> ClassMap:
    """Map model classes to dataset categories.

    ``labels``: from ``--names`` (``explicit``) or from the model itself (metadata names, embedded label
    file); ``num_classes``: the model's class count where its output shapes tell (0/None otherwise).
    With labels, classes map by name; a model's own names that match no category at all fall back to
    the dataset's order when the counts agree (a model exported without real names). Without labels,
    model class i is the i-th category of the annotation JSON, as COCO-trained YOLO models are indexed.
    """
    cats = list(categories)
    n_cat = len(cats)
    if labels is not None:
        if num_classes and labels.count > num_classes:
            raise InputError(f"{labels.source}: names class index {labels.count - 1} but the model {model} has "
                             f"{num_classes} classes")
        mapping, dropped = _by_name(cats, labels)
        notes = []
        if num_classes:
            unnamed = [i for i in range(num_classes) if i not in labels.names]
            if unnamed:
                notes.append(f"{len(unnamed)} model classes have no name in {labels.source} and are dropped")
                dropped += [(i, "") for i in unnamed]
        if not mapping:
            if not explicit and (num_classes or labels.count) == n_cat:
                return ClassMap({i: c["id"] for i, c in enumerate(cats)},
                                f"dataset category order (the model's own names, {labels.source}, match none "
                                f"of the dataset's)", notes=("model names ignored: no overlap",))
            some = ", ".join(n for _, n in list(labels.names.items())[:5]) + (", ..." if len(labels.names) > 5 else "")
            cat_names = ", ".join(c["name"] for c in cats[:5]) + (", ..." if len(cats) > 5 else "")
            raise InputError(f"{labels.source}: none of the {len(labels.names)} class names ({some}) is a "
                             f"category of {dataset} ({cat_names})")
        hit = set(mapping.values())
        missing = tuple((c["id"], c["name"]) for c in cats if c["id"] not in hit)
        return ClassMap(mapping, labels.source, tuple(sorted(dropped)), missing, True, tuple(notes))
    if num_classes and num_classes != n_cat:
        raise InputError(f"{model}: model has {num_classes} classes but the dataset {dataset} has {n_cat} "
                         "categories; give the model's class names with --names")
    return ClassMap({i: c["id"] for i, c in enumerate(cats)}, "dataset category order")
