"""COCO JSON and Pascal VOC XML readers/writers: conversions, round trips, malformed files."""

import json

import numpy as np
import pytest

from workshop.data.formats import (
    read_coco,
    read_voc,
    read_voc_folder,
    records_to_coco,
    voc_to_xml,
    write_coco,
    write_voc,
)


def _coco():
    return {
        "images": [{"id": 10, "file_name": "a.jpg", "height": 100, "width": 200},
                   {"id": 11, "file_name": "b.jpg", "height": 50, "width": 60},
                   {"id": 12, "file_name": "empty.jpg", "height": 30, "width": 30}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 20, 30, 40], "area": 900.5, "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 3, "bbox": [0.5, 1.5, 2.0, 3.0], "area": 6.0, "iscrowd": 1,
             "segmentation": {"counts": "abc", "size": [50, 60]}},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [0, 0, 200, 100]},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat", "supercategory": "animal"}],
    }


def test_read_coco_converts_boxes_and_maps_categories(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_coco()))
    records, cats = read_coco(path)
    assert [c["id"] for c in cats] == [3, 7] and [c["name"] for c in cats] == ["cat", "dog"]
    assert [r["image_id"] for r in records] == [10, 11, 12]
    a, b, empty = records
    np.testing.assert_array_equal(a["boxes"], [[10, 20, 40, 60], [0, 0, 200, 100]])   # xywh -> xyxy
    np.testing.assert_array_equal(a["category_ids"], [7, 3])
    np.testing.assert_array_equal(a["classes"], [2, 1])          # cat (id 3) -> 1, dog (id 7) -> 2
    np.testing.assert_array_equal(a["area"], [900.5, 200 * 100])  # given area kept, else box area
    np.testing.assert_array_equal(a["iscrowd"], [False, False])
    np.testing.assert_array_equal(b["iscrowd"], [True])
    np.testing.assert_allclose(b["boxes"], [[0.5, 1.5, 2.5, 4.5]])
    assert a["height"] == 100 and a["width"] == 200 and a["file_name"] == "a.jpg"
    assert empty["boxes"].shape == (0, 4) and empty["classes"].shape == (0,)
    assert a["boxes"].dtype == np.float64 and a["classes"].dtype == np.int64


def test_coco_round_trip(tmp_path):
    records, cats = read_coco(_coco())
    out = write_coco(records, cats, tmp_path / "out.json")
    again, cats2 = read_coco(tmp_path / "out.json")
    assert cats2 == cats
    for r1, r2 in zip(records, again):
        for key in ("image_id", "file_name", "height", "width"):
            assert r1[key] == r2[key]
        for key in ("boxes", "classes", "category_ids", "iscrowd", "area", "annotation_ids"):
            np.testing.assert_array_equal(r1[key], r2[key])
        assert r1["segmentation"] == r2["segmentation"]
    assert sorted(a["bbox"] for a in out["annotations"]) == sorted(a["bbox"] for a in _coco()["annotations"])


def test_records_to_coco_from_classes():
    records = [{"height": 20, "width": 30, "boxes": np.array([[1.0, 2.0, 11.0, 7.0]]), "classes": [2]}]
    cats = [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}]
    data = records_to_coco(records, cats)
    (ann,) = data["annotations"]
    assert ann["category_id"] == 9 and ann["bbox"] == [1, 2, 10, 5] and ann["area"] == 50
    assert data["images"][0]["id"] == 1
    with pytest.raises(ValueError, match="classes should be in 1..2"):
        records_to_coco([dict(records[0], classes=[3])], cats)
    with pytest.raises(ValueError, match="category_ids"):
        records_to_coco([{"height": 2, "width": 2, "boxes": [[0, 0, 1, 1]]}], cats)
    with pytest.raises(ValueError, match="row 0"):
        records_to_coco([dict(records[0], boxes=[[5, 0, 1, 1]])], cats)


def _broken(mutate):
    data = _coco()
    mutate(data)
    return data


@pytest.mark.parametrize("data, match", [
    (_broken(lambda d: d.pop("annotations")), "missing key 'annotations'"),
    (_broken(lambda d: d["annotations"][0].pop("bbox")), r"annotations\[0\]: missing key 'bbox'"),
    (_broken(lambda d: d["annotations"][1].update(bbox=[1, 2, 3])), r"annotations\[1\]: bbox should be four"),
    (_broken(lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4])), "negative width"),
    (_broken(lambda d: d["annotations"][0].update(bbox=[1, 2, float("nan"), 4])), "finite"),
    (_broken(lambda d: d["annotations"][0].update(image_id=99)), "image_id 99 is not in 'images'"),
    (_broken(lambda d: d["annotations"][0].update(category_id=4)), "category_id 4 is not in 'categories'"),
    (_broken(lambda d: d["images"].append(dict(d["images"][0]))), "duplicate image id 10"),
    (_broken(lambda d: d["categories"].append({"id": 7, "name": "x"})), "duplicate category"),
    (_broken(lambda d: d["images"][0].update(width="200")), "'width' should be int"),
    (_broken(lambda d: d["annotations"][2].update(id=1)), "duplicate annotation id 1"),
    ([1, 2], "COCO JSON file or a dict"),
])
def test_read_coco_malformed(data, match):
    with pytest.raises(ValueError, match=match):
        read_coco(data)


def test_read_coco_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_coco(bad)
    with pytest.raises(ValueError, match="not found"):
        read_coco(tmp_path / "missing.json")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object at the top level"):
        read_coco(listed)


# ----------------------------------------------------------------------------- VOC

VOC = """<annotation>
  <folder>VOC2007</folder>
  <filename>000001.jpg</filename>
  <size><width>353</width><height>500</height><depth>3</depth></size>
  <object>
    <name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>48</xmin><ymin>240</ymin><xmax>195</xmax><ymax>371</ymax></bndbox>
  </object>
  <object>
    <name>person</name><truncated>0</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>1</xmax><ymax>10</ymax></bndbox>
  </object>
</annotation>
"""


def test_read_voc_converts_one_based_inclusive():
    rec = read_voc(VOC, class_names=("background", "dog", "person"))
    # xmin=48 (1-based) is 0-based column 47; xmax=195 inclusive ends at continuous 195
    np.testing.assert_array_equal(rec["boxes"], [[47, 239, 195, 371], [0, 0, 1, 10]])
    widths = rec["boxes"][:, 2] - rec["boxes"][:, 0]
    np.testing.assert_array_equal(widths, [195 - 48 + 1, 1])      # a one-pixel-wide box
    assert rec["names"] == ["dog", "person"]
    np.testing.assert_array_equal(rec["difficult"], [False, True])
    np.testing.assert_array_equal(rec["truncated"], [True, False])
    np.testing.assert_array_equal(rec["classes"], [1, 2])
    assert (rec["width"], rec["height"], rec["depth"], rec["file_name"]) == (353, 500, 3, "000001.jpg")


def test_voc_round_trip(tmp_path):
    rec = read_voc(VOC)
    path = tmp_path / "a.xml"
    text = write_voc(rec, path)
    assert "<xmin>48</xmin>" in text and "<xmax>195</xmax>" in text
    again = read_voc(path)
    np.testing.assert_array_equal(again["boxes"], rec["boxes"])
    for key in ("names", "width", "height", "file_name"):
        assert again[key] == rec[key]
    np.testing.assert_array_equal(again["difficult"], rec["difficult"])
    np.testing.assert_array_equal(again["truncated"], rec["truncated"])
    # from a record with class ids, non-integer coordinates survive too
    rec2 = {"height": 10, "width": 10, "boxes": np.array([[0.5, 1.0, 4.25, 9.0]]), "classes": [1]}
    back = read_voc(voc_to_xml(rec2, class_names=("bg", "cat")), class_names=("bg", "cat"))
    np.testing.assert_array_equal(back["boxes"], rec2["boxes"])
    np.testing.assert_array_equal(back["classes"], [1])
    (tmp_path / "b.xml").write_text(voc_to_xml(rec2, class_names=("bg", "cat")))
    assert [r["file_name"] for r in read_voc_folder(tmp_path)] == ["000001.jpg", ""]


@pytest.mark.parametrize("text, match", [
    ("<annotation><size>", "not valid XML"),
    ("<root/>", "expected an <annotation> root"),
    ("<annotation><object/></annotation>", "missing <size>"),
    (VOC.replace("<xmin>48</xmin>", ""), r"object 0 <bndbox>: missing <xmin>"),
    (VOC.replace("<xmin>48</xmin>", "<xmin>abc</xmin>"), "should be a number"),
    (VOC.replace("<xmax>195</xmax>", "<xmax>40</xmax>"), "inverted box"),
    (VOC.replace("<difficult>1</difficult>", "<difficult>yes</difficult>"), "should be 0 or 1"),
    (VOC.replace("<name>dog</name>", ""), "object 0: missing <name>"),
])
def test_read_voc_malformed(text, match):
    with pytest.raises(ValueError, match=match):
        read_voc(text)


def test_voc_unknown_class_and_writer_errors(tmp_path):
    with pytest.raises(ValueError, match="'person' is not in class_names"):
        read_voc(VOC, class_names=("background", "dog"))
    with pytest.raises(ValueError, match="not found"):
        read_voc(tmp_path / "nope.xml")
    with pytest.raises(ValueError, match="narrower than one pixel"):
        voc_to_xml({"height": 5, "width": 5, "boxes": [[1, 1, 1.5, 3]], "names": ["a"]})
    with pytest.raises(ValueError, match="needs 'names'"):
        voc_to_xml({"height": 5, "width": 5, "boxes": [[1, 1, 3, 3]]})
    with pytest.raises(ValueError, match="1 boxes but 2 names"):
        voc_to_xml({"height": 5, "width": 5, "boxes": [[1, 1, 3, 3]], "names": ["a", "b"]})
