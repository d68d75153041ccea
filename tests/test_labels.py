"""Label files in every format (validator/data/labels.py) and the model-class -> dataset-category map.

Every input is written by hand below, and so is every expected ``{model class index: name}``: no expected
value is computed by the code under test.
"""

from __future__ import annotations

import pytest

from validator.data.labels import Labels, class_map, parse_labels, read_labels
from validator.errors import InputError


def names(text: str, suffix: str = "") -> dict[int, str]:
    return parse_labels(text, "labels.txt", suffix).names


def one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


# ------------------------------------------------------------------------------------------- indexed (Coral)
# The start and the end of the Coral/TFLite COCO label map: model class index = TF OD API id - 1, so the
# ids COCO never used (12 "street sign", 26 "hat", ...) are gaps here: 11, 25, 28, 29, ..., 82.
CORAL_COCO_EXCERPT = """\
0  person
1  bicycle
2  car
3  motorcycle
4  airplane
5  bus
6  train
7  truck
8  boat
9  traffic light
10  fire hydrant
12  stop sign
13  parking meter
14  bench
24  backpack
26  umbrella
29  handbag
30  tie
77  teddy bear
78  hair drier
79  toothbrush
"""

CORAL_COCO_TAIL = """\
84  book
85  clock
86  vase
87  scissors
88  teddy bear
89  toothbrush
"""


def test_coral_coco_excerpt_with_gaps():
    lab = parse_labels(CORAL_COCO_EXCERPT, "coco_labels.txt")
    assert lab.names == {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 4: "airplane", 5: "bus",
                         6: "train", 7: "truck", 8: "boat", 9: "traffic light", 10: "fire hydrant",
                         12: "stop sign", 13: "parking meter", 14: "bench", 24: "backpack", 26: "umbrella",
                         29: "handbag", 30: "tie", 77: "teddy bear", 78: "hair drier", 79: "toothbrush"}
    assert lab.count == 80
    assert lab.source == "coco_labels.txt"


def test_coral_90_id_tail_count_is_highest_index_plus_one():
    lab = parse_labels("0  person\n2  car\n" + CORAL_COCO_TAIL, "coco90.txt")
    assert lab.names == {0: "person", 2: "car", 84: "book", 85: "clock", 86: "vase", 87: "scissors",
                         88: "teddy bear", 89: "toothbrush"}
    assert lab.count == 90


def test_indexed_colon_form():
    assert names("0: person\n1: traffic light\n3: hot dog\n") == {0: "person", 1: "traffic light", 3: "hot dog"}
    assert names("0:person\n2 :car\n") == {0: "person", 2: "car"}


def test_indexed_comma_form():
    assert names("0,person\n1, traffic light\n5 , 7up can\n") == {0: "person", 1: "traffic light", 5: "7up can"}


def test_indexed_tab_and_crlf():
    assert names("0\tperson\r\n1\ttraffic light\r\n") == {0: "person", 1: "traffic light"}


def test_indexed_out_of_order_lines_sorted_by_index():
    lab = parse_labels("5  zebra\n0  person\n2  car\n", "l.txt")
    assert lab.names == {0: "person", 2: "car", 5: "zebra"}
    assert list(lab.names) == [0, 2, 5]


def test_indexed_with_blank_lines_and_unused_marker():
    assert names("\n0  person\n\n2  ???\n3  car\n\n\n") == {0: "person", 3: "car"}


def test_indexed_names_with_digits():
    # The index is the first number; what follows the separator is the name, digits and all.
    assert names("0  7up can\n1  3 musketeers\n2  person\n") == {0: "7up can", 1: "3 musketeers", 2: "person"}


def test_duplicate_index_is_an_error():
    with pytest.raises(InputError) as e:
        parse_labels("0  person\n1  car\n1  truck\n", "dup.txt")
    one_line_error(e, "dup.txt", "1", "twice")


# ------------------------------------------------------------------------------------------- plain
def test_plain_one_name_per_line():
    assert names("person\nbicycle\ncar\n") == {0: "person", 1: "bicycle", 2: "car"}


def test_plain_gaps_unused_marker_blank_lines_and_trailing_blanks():
    text = "???\nperson\nbicycle\n\ncar\n???\ntraffic light\n\n\n   \n"
    lab = parse_labels(text, "labelmap.txt")
    assert lab.names == {1: "person", 2: "bicycle", 4: "car", 6: "traffic light"}
    assert lab.count == 7  # trailing blank lines are not classes


def test_plain_leading_blank_line_is_index_zero_unused():
    assert names("\nperson\ncar\n") == {1: "person", 2: "car"}


def test_plain_names_with_spaces_digits_and_surrounding_whitespace():
    assert names("traffic light\n7up can\n  hot dog  \nB-52\n") == {0: "traffic light", 1: "7up can",
                                                                     2: "hot dog", 3: "B-52"}


def test_plain_name_starting_with_digit_is_not_indexed():
    # "3 musketeers" looks like an indexed line, but the others are not: the file is plain.
    assert names("person\n3 musketeers\ncar\n") == {0: "person", 1: "3 musketeers", 2: "car"}
    assert names("3 musketeers\n7up can\ntraffic light\n") == {0: "3 musketeers", 1: "7up can",
                                                               2: "traffic light"}


def test_plain_crlf():
    assert names("person\r\n\r\ncar\r\n") == {0: "person", 2: "car"}


def test_plain_file_without_trailing_newline():
    assert names("person\ncar") == {0: "person", 1: "car"}


def test_single_line_plain():
    lab = parse_labels("person", "one.txt")
    assert lab.names == {0: "person"} and lab.count == 1


# ------------------------------------------------------------------------------------------- JSON
def test_json_list():
    assert names('["person", "traffic light", "7up can"]') == {0: "person", 1: "traffic light", 2: "7up can"}


def test_json_list_empty_string_and_unused_marker_are_gaps():
    assert names('["person", "", "???", "car"]') == {0: "person", 3: "car"}


@pytest.mark.parametrize(("text", "suffix"), [('["person", null, "car"]', ""),
                                              ('{"0": "person", "1": null, "2": "car"}', ""),
                                              ("names:\n  - person\n  - ~\n  - car\n", ".yaml"),
                                              ("names:\n  0: person\n  1:\n  2: car\n", ".yaml")],
                         ids=["json-list", "json-dict", "yaml-list", "yaml-dict"])
def test_null_name_is_a_gap(text, suffix):
    assert names(text, suffix) == {0: "person", 2: "car"}


def test_json_dict_string_keys_with_gaps():
    assert names('{"0": "person", "2": "car", "89": "toothbrush"}') == {0: "person", 2: "car", 89: "toothbrush"}


def test_json_names_entry_list_and_dict():
    assert names('{"nc": 3, "names": ["person", "bicycle", "car"]}') == {0: "person", 1: "bicycle", 2: "car"}
    assert names('{"names": {"0": "person", "5": "bus"}}') == {0: "person", 5: "bus"}


def test_json_multiline_pretty_printed():
    text = '{\n  "names": [\n    "person",\n    "traffic light"\n  ]\n}\n'
    assert names(text) == {0: "person", 1: "traffic light"}


def test_json_dict_with_non_index_keys_is_an_error():
    with pytest.raises(InputError) as e:
        parse_labels('{"person": 0, "car": 1}', "map.json")
    one_line_error(e, "map.json")


def test_json_negative_index_is_an_error():
    with pytest.raises(InputError) as e:
        parse_labels('{"-1": "background", "0": "person"}', "neg.json")
    one_line_error(e, "neg.json", "negative")


def test_json_of_the_wrong_shape_is_an_error():
    with pytest.raises(InputError) as e:
        parse_labels('{"names": 3}', "odd.json")
    one_line_error(e, "odd.json")


def test_invalid_json_is_one_line_naming_the_file(tmp_path):
    p = tmp_path / "names.json"
    p.write_text('["person", "car",\n  "bus"\n', encoding="utf-8")  # truncated: no closing bracket
    with pytest.raises(InputError) as e:
        read_labels(p)
    one_line_error(e, str(p), "invalid JSON")


# ------------------------------------------------------------------------------------------- YAML
ULTRALYTICS_YAML_LIST = """\
# Ultralytics data YAML (as in ultralytics/cfg/datasets/coco8.yaml)
path: ../datasets/coco8  # dataset root dir
train: images/train  # train images (relative to 'path')
val: images/val  # val images (relative to 'path')
test:  # test images (optional)

# Classes
names:
  - person
  - traffic light
  - 7up can
  - hot dog
"""

ULTRALYTICS_YAML_DICT = """\
path: ../datasets/coco
train: train2017.txt
val: val2017.txt

# Classes
names:
  0: person
  1: bicycle
  9: traffic light
  79: toothbrush
"""


def test_yaml_names_list(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text(ULTRALYTICS_YAML_LIST, encoding="utf-8")
    lab = read_labels(p)
    assert lab.names == {0: "person", 1: "traffic light", 2: "7up can", 3: "hot dog"}
    assert lab.source == str(p)


def test_yaml_names_dict(tmp_path):
    p = tmp_path / "coco.yml"
    p.write_text(ULTRALYTICS_YAML_DICT, encoding="utf-8")
    lab = read_labels(p)
    assert lab.names == {0: "person", 1: "bicycle", 9: "traffic light", 79: "toothbrush"}
    assert lab.count == 80


def test_yaml_detected_by_names_key_without_suffix():
    assert names(ULTRALYTICS_YAML_DICT) == {0: "person", 1: "bicycle", 9: "traffic light", 79: "toothbrush"}


def test_yaml_names_flow_list():
    assert names("path: x\nnames: ['person', 'traffic light']\n", ".yaml") == {0: "person", 1: "traffic light"}


def test_yaml_flow_mapping_document(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("{path: ../datasets/coco8, names: [person, traffic light]}\n", encoding="utf-8")
    assert read_labels(p).names == {0: "person", 1: "traffic light"}


def test_yaml_without_names_is_an_error(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("path: ../datasets/coco8\ntrain: images/train\nval: images/val\nnc: 80\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_labels(p)
    one_line_error(e, str(p), "names")


def test_invalid_yaml_is_one_line_naming_the_file(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("path: ../datasets/coco8\nnames: [person, car\nval: images/val\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_labels(p)
    one_line_error(e, str(p), "invalid YAML")


# ------------------------------------------------------------------------------------------- pbtxt
PBTXT_DISPLAY = """\
item {
  name: "/m/01g317"
  id: 1
  display_name: "person"
}
item {
  name: "/m/015qff"
  id: 10
  display_name: "traffic light"
}
item {
  name: "/m/0cmx8"
  id: 90
  display_name: "toothbrush"
}
"""

PBTXT_NAME_ONLY = """\
item {
  id: 0
  name: 'person'
}
item { id: 2 name: "car" }
item {
  name: "fire hydrant"
  id: 11
}
"""


def test_pbtxt_display_name_wins_over_name(tmp_path):
    p = tmp_path / "mscoco_label_map.pbtxt"
    p.write_text(PBTXT_DISPLAY, encoding="utf-8")
    lab = read_labels(p)
    assert lab.names == {1: "person", 10: "traffic light", 90: "toothbrush"}  # ids kept as written
    assert lab.count == 91


def test_pbtxt_name_only():
    assert names(PBTXT_NAME_ONLY) == {0: "person", 2: "car", 11: "fire hydrant"}


def test_pbtxt_with_leading_comment():
    assert names("# label map\n" + PBTXT_NAME_ONLY) == {0: "person", 2: "car", 11: "fire hydrant"}


def test_pbtxt_item_without_id_is_an_error():
    with pytest.raises(InputError) as e:
        parse_labels('item {\n  id: 1\n  name: "person"\n}\nitem {\n  display_name: "car"\n}\n', "map.pbtxt")
    one_line_error(e, "map.pbtxt", "without id or name")


# ------------------------------------------------------------------------------------------- BOM, empty, files
@pytest.mark.parametrize(("text", "want"), [
    ("0  person\n2  car\n", {0: "person", 2: "car"}),
    ("person\ncar\n", {0: "person", 1: "car"}),
    ('["person", "car"]', {0: "person", 1: "car"}),
    ("names:\n  0: person\n  1: car\n", {0: "person", 1: "car"}),
    ('item { id: 1 display_name: "person" }\n', {1: "person"}),
], ids=["coral", "plain", "json", "yaml", "pbtxt"])
def test_bom_at_start(tmp_path, text, want):
    p = tmp_path / "labels.txt"
    p.write_text(text, encoding="utf-8-sig")  # writes the BOM
    assert p.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_labels(p).names == want


@pytest.mark.parametrize("text", ["", "\n\n", "   \n\t\n", "\ufeff", "\ufeff\n"])
def test_empty_file_is_an_error(tmp_path, text):
    p = tmp_path / "empty.txt"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_labels(p)
    one_line_error(e, str(p), "empty")


@pytest.mark.parametrize("text", ["???\n\n???\n", "[]", '{"names": []}', "0  ???\n"])
def test_no_names_at_all_is_an_error(text):
    with pytest.raises(InputError) as e:
        parse_labels(text, "gaps.txt")
    one_line_error(e, "gaps.txt")


def test_missing_file_is_an_error(tmp_path):
    p = tmp_path / "nope.txt"
    with pytest.raises(InputError) as e:
        read_labels(p)
    one_line_error(e, str(p))


def test_non_utf8_file_is_an_error(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9\nperson\n".encode("latin-1"))
    with pytest.raises(InputError) as e:
        read_labels(p)
    one_line_error(e, str(p), "UTF-8")


def test_read_labels_accepts_str_path(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("person\ncar\n", encoding="utf-8")
    assert read_labels(str(p)).names == {0: "person", 1: "car"}


# ------------------------------------------------------------------------------------------- class_map
CATS = [  # a COCO-like excerpt: non-contiguous ids, JSON order not by id
    {"id": 10, "name": "traffic light"},
    {"id": 1, "name": "person"},
    {"id": 3, "name": "car"},
    {"id": 58, "name": "hot dog"},
    {"id": 90, "name": "toothbrush"},
]


def cmap(labels, num_classes, explicit=True):
    return class_map(CATS, labels, num_classes, explicit=explicit, model="m.onnx", dataset="ann.json")


def test_class_map_by_exact_name():
    lab = Labels({0: "person", 1: "car", 2: "traffic light", 3: "hot dog", 4: "toothbrush"}, "names.txt")
    cm = cmap(lab, 5)
    assert cm.category_of == {0: 1, 1: 3, 2: 10, 3: 58, 4: 90}
    assert cm.by_name and cm.dropped == () and cm.missing == ()
    d = cm.describe()
    assert d == {"source": "names.txt", "by": "name", "mapped": 5, "model_classes_dropped": [],
                 "dataset_categories_missing": [], "notes": []}


def test_class_map_loose_names():
    lab = Labels({0: "Traffic_Light", 1: "PERSON", 2: "hot-dog", 3: " ToothBrush ", 4: "Car"}, "n.txt")
    cm = cmap(lab, 5)
    assert cm.category_of == {0: 10, 1: 1, 2: 58, 3: 90, 4: 3}
    assert cm.by_name and cm.dropped == () and cm.missing == ()
    lab = Labels({0: "traffic  light", 1: "traffic__light", 2: "Traffic - Light"}, "n.txt")
    assert cmap(lab, 3).category_of == {0: 10, 1: 10, 2: 10}  # runs of separators count as one


def test_class_map_exact_name_beats_loose_match():
    cats = [{"id": 5, "name": "Person"}, {"id": 6, "name": "person"}]
    lab = Labels({0: "person", 1: "PERSON"}, "n.txt")
    cm = class_map(cats, lab, 2, explicit=True, model="m", dataset="d")
    assert cm.category_of == {0: 6, 1: 5}  # exact first; loose: the first category of that spelling


def test_class_map_loose_ignores_spaces_entirely():
    cats = [{"id": 64, "name": "potted plant"}, {"id": 67, "name": "dining table"}]
    lab = Labels({0: "pottedplant", 1: "diningtable"}, "voc.txt")
    cm = class_map(cats, lab, 2, explicit=True, model="m", dataset="d")
    assert cm.category_of == {0: 64, 1: 67}


def test_class_map_dropped_and_missing():
    lab = Labels({0: "person", 1: "zebra", 2: "car", 3: "unicorn"}, "names.txt")
    cm = cmap(lab, 4)
    assert cm.category_of == {0: 1, 2: 3}
    assert cm.dropped == ((1, "zebra"), (3, "unicorn"))
    assert cm.missing == ((10, "traffic light"), (58, "hot dog"), (90, "toothbrush"))  # in JSON order
    d = cm.describe()
    assert d["by"] == "name" and d["mapped"] == 2
    assert d["model_classes_dropped"] == [{"index": 1, "name": "zebra"}, {"index": 3, "name": "unicorn"}]
    assert d["dataset_categories_missing"] == [{"id": 10, "name": "traffic light"}, {"id": 58, "name": "hot dog"},
                                               {"id": 90, "name": "toothbrush"}]


def test_class_map_with_gaps_in_labels():
    lab = parse_labels("0  person\n2  car\n9  traffic light\n", "coral.txt")
    cm = cmap(lab, None)
    assert cm.category_of == {0: 1, 2: 3, 9: 10}
    assert cm.missing == ((58, "hot dog"), (90, "toothbrush"))
    assert cm.dropped == ()


def test_class_map_zero_overlap_explicit_is_an_error():
    lab = Labels({0: "cat", 1: "dog", 2: "horse", 3: "sheep", 4: "cow"}, "animals.txt")
    with pytest.raises(InputError) as e:
        cmap(lab, 5, explicit=True)  # same count as the dataset: still an error, the user's names win
    msg = one_line_error(e, "animals.txt", "ann.json")
    assert msg.startswith("animals.txt")


def test_class_map_model_names_zero_overlap_same_count_falls_back_to_dataset_order():
    lab = Labels({0: "class0", 1: "class1", 2: "class2", 3: "class3", 4: "class4"}, "m.onnx metadata names")
    cm = cmap(lab, 5, explicit=False)
    assert cm.category_of == {0: 10, 1: 1, 2: 3, 3: 58, 4: 90}  # the JSON's order
    assert not cm.by_name and cm.describe()["by"] == "order"
    assert "m.onnx metadata names" in cm.source
    assert cm.notes


def test_class_map_model_names_zero_overlap_other_count_is_an_error():
    lab = Labels({0: "class0", 1: "class1", 2: "class2"}, "m.onnx metadata names")
    with pytest.raises(InputError) as e:
        cmap(lab, 3, explicit=False)
    one_line_error(e, "m.onnx metadata names")


def test_class_map_label_index_beyond_model_classes_is_an_error():
    lab = Labels({0: "person", 1: "car", 7: "toothbrush"}, "names.txt")
    with pytest.raises(InputError) as e:
        cmap(lab, 5)
    one_line_error(e, "names.txt", "7", "m.onnx", "5 classes")


def test_class_map_model_classes_without_a_name_are_dropped():
    lab = Labels({0: "person", 2: "car"}, "names.txt")
    cm = cmap(lab, 4)
    assert cm.category_of == {0: 1, 2: 3}
    assert cm.dropped == ((1, ""), (3, ""))
    assert any("2 model classes have no name" in n for n in cm.notes)


def test_class_map_without_labels_is_dataset_order():
    cm = cmap(None, 5)
    assert cm.category_of == {0: 10, 1: 1, 2: 3, 3: 58, 4: 90}
    assert not cm.by_name and cm.dropped == () and cm.missing == ()
    assert cmap(None, None).category_of == {0: 10, 1: 1, 2: 3, 3: 58, 4: 90}  # class count unknown


def test_class_map_without_labels_count_mismatch_is_an_error():
    with pytest.raises(InputError) as e:
        cmap(None, 80)
    one_line_error(e, "m.onnx", "80 classes", "5 categories", "--names")
