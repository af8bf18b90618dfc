"""Every layout in tests/data/real/ (files other tools wrote; see SOURCES.md) imports with the
right count, labels and coordinates, and says what it skipped. Expected values are worked out by
hand from the files, not taken from the code."""
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.formats import read_annotations

REAL = Path(__file__).resolve().parents[1] / "data" / "real"

# images each corpus folder needs (the tests make them; some folders carry their own)
IMAGES = {
    "labelme5": [("2011_000003.jpg", 500, 338)],
    "labelme3": [("apc2016_obj3.jpg", 200, 150)],
    "xanylabeling": [("x_png.rf.3b7f1e2c9a.jpg", 80, 60), ("x_png.rf.3b7f1e2c9b.jpg", 80, 60)],
    "labelme_imagedata": [],
    "labelimg": [("road_x_png.rf.9f8e7d.jpg", 96, 64), ("road_x_png.rf.1a2b3c.jpg", 96, 64)],
    "cvat_voc": [("JPEGImages/frame_000010.jpg", 128, 96), ("JPEGImages/frame_000011.jpg", 128, 96)],
    "voc": [("JPEGImages/2007_000001.jpg", 20, 10)],
    "cocoapi": [("COCO_val2014_000000000042.jpg", 640, 478), ("COCO_val2014_000000000073.jpg", 565, 640),
                ("COCO_val2014_000000000074.jpg", 640, 426)],
    "coco_cvat": [("images/day/frame_000001.jpg", 64, 48), ("images/night/frame_000002.jpg", 64, 48),
                  ("images/night/frame_000003.jpg", 64, 48)],
    "ultralytics": [("images/train/street_jpg.rf.5c2f0a.jpg", 64, 48), ("images/val/lane_01.jpg", 64, 48),
                    ("images/val/empty_frame.jpg", 64, 48)],
    "ultralytics_pose": [("images/train/pose_01.jpg", 64, 48)],
    "ultralytics_predict": [("bus.jpg", 64, 48)],
    "yolo_labelimg": [("img_0001.jpg", 64, 48)],
    "tf_od": [("raccoon-1.jpg", 80, 60), ("raccoon-2.jpg", 80, 60)],
    "retinanet": [("images/img_001.jpg", 80, 60), ("images/img_002.jpg", 80, 60), ("images/img_003.jpg", 80, 60)],
    "csv": [(n, 64, 64) for n in ("img0003.jpg", "img0004.jpg", "1.jpg", "2.jpg", "3.jpg", "shelf.01.png")],
    "mmdetection": [("fake1.jpg", 800, 800), ("fake2.jpg", 800, 800), ("fake3.jpg", 800, 800),
                    ("VOCdevkit/VOC2012/JPEGImages/000001.jpg", 335, 500), ("custom_dataset/images/000001.jpg", 353, 500)],
    "roboflow_yolo": [], "roboflow_voc": [], "roboflow_coco": [], "darknet": [],
}


def make_image(path, w, h):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imencode(path.suffix, np.full((h, w, 3), 80, np.uint8))[1].tofile(str(path))


@pytest.fixture
def dataset(tmp_path):
    def make(name):
        root = tmp_path / name
        shutil.copytree(REAL / name, root)
        for rel, w, h in IMAGES[name]:
            make_image(root / rel, w, h)
        return root
    return make


def boxes_by_name(result, root):
    return {img.relative_to(root).as_posix(): [(b.label, tuple(round(v, 4) for v in b.corners())) for b in bs]
            for img, bs in result.boxes.items()}


def test_every_corpus_folder_is_covered_by_a_test_table():
    assert sorted(p.name for p in REAL.iterdir() if p.is_dir()) == sorted(IMAGES)


def test_labelme5_rectangles_and_other_shapes(dataset):
    root = dataset("labelme5")
    got = read_annotations(root, None)
    assert got.errors == []
    boxes = got.boxes[root / "2011_000003.jpg"]
    r = (30 ** 2 + 41 ** 2) ** 0.5  # circle: centre (195, 84), edge (225, 125)
    assert [b.label for b in boxes] == ["person", "bottle", "wheel", "stain", "person"]
    np.testing.assert_allclose([b.corners() for b in boxes], [
        (250.8142292490119, 106.96696468940974, 329.2292490118577, 269.3913043478261),
        (73, 260, 108, 322), (195 - r, 84 - r, 195 + r, 84 + r), (10, 20, 13, 22), (380, 10, 420, 40)])
    assert [b.attr("derived_from") for b in boxes] == [None, "polygon", "circle", "mask", None]
    (report,) = got.files
    assert (report.boxes, report.derived, len(report.skipped)) == (5, 3, 3)
    assert [s.split(":")[0] for s in report.skipped] == ["shapes[3] (point 'nose')", "shapes[4] (line 'horizon')",
                                                         "shapes[5] (linestrip 'crack')"]
    assert got.sizes[root / "2011_000003.jpg"] == (500, 338)
    text = got.summary_text()
    assert "5 box(es)" in text and "3 derived" in text and "shapes[3] (point 'nose'): not a region" in text


def test_labelme3_shapes_without_shape_type(dataset):
    root = dataset("labelme3")
    got = read_annotations(root / "apc2016_obj3.json", None)
    assert boxes_by_name(got, root) == {"apc2016_obj3.jpg": [
        ("shelf", (25, 35, 70, 95)), ("highland_6539_self_stick_notes", (95, 48, 164, 120)),
        ("mead_index_cards", (130, 20, 150, 40))]}
    shelf, notes, cards = got.boxes[root / "apc2016_obj3.jpg"]
    assert shelf.attr("derived_from") is None and cards.attr("derived_from") is None  # 4-point boxes
    assert notes.attr("derived_from") == "polygon" and got.files[0].derived == 1


def test_xanylabeling_four_corner_rectangles_keep_score_and_difficult(dataset):
    root = dataset("xanylabeling")
    got = read_annotations(root, None)
    assert boxes_by_name(got, root) == {"x_png.rf.3b7f1e2c9a.jpg": [
        ("helmet", (12, 8, 40, 30.5)), ("head", (50, 10, 70, 33)), ("plate", (18, 40, 44, 54))]}
    helmet, head, plate = got.boxes[root / "x_png.rf.3b7f1e2c9a.jpg"]
    assert helmet.attr("score") == "0.8731" and head.attr("difficult") == "1" and plate.attr("derived_from") == "rotation"


def test_labelme_embedded_image_data_used_when_the_image_is_missing(dataset):
    root = dataset("labelme_imagedata")
    got = read_annotations(root, None)
    image = root / "embedded_only.png"
    assert not image.exists() and got.errors == []
    assert [(b.label, b.corners()) for b in got.boxes[image]] == [("dot", (1, 1, 4, 3))]
    assert got.sizes[image] == (6, 4) and got.embedded[image] == root / "embedded_only.json"
    assert "embedded" in got.summary_text()


def test_labelimg_voc_with_dotted_names_windows_paths_and_no_depth(dataset):
    root = dataset("labelimg")
    got = read_annotations(root, None)
    assert got.errors == []
    assert boxes_by_name(got, root) == {
        "road_x_png.rf.1a2b3c.jpg": [("car", (1, 2, 30, 25))],
        "road_x_png.rf.9f8e7d.jpg": [("car", (10, 12, 45, 40)), ("traffic sign", (80, 2, 96, 20))]}
    sign = got.boxes[root / "road_x_png.rf.9f8e7d.jpg"][1]
    assert sign.attr("difficult") == "1" and sign.attr("truncated") == "1"


def test_cvat_voc_float_coordinates_occluded_attributes_and_missing_size(dataset):
    root = dataset("cvat_voc")
    got = read_annotations(root, None)
    assert got.errors == []
    assert boxes_by_name(got, root) == {
        "JPEGImages/frame_000010.jpg": [("pedestrian", (12.56, 20.1, 40.93, 88.47)), ("car", (60, 30.25, 127.5, 80.75))],
        "JPEGImages/frame_000011.jpg": [("car", (5.5, 6.5, 50.25, 45.75))]}
    ped = got.boxes[root / "JPEGImages/frame_000010.jpg"][0]
    assert ped.attr("occluded") == "1" and "<value>adult</value>" in ped.attr("voc_object")
    assert root / "JPEGImages/frame_000011.jpg" not in got.sizes  # no <size>: not guessed


def test_voc_devkit_part_and_actions_are_not_extra_boxes(dataset):
    root = dataset("voc")
    got = read_annotations(root, None)
    assert boxes_by_name(got, root) == {"JPEGImages/2007_000001.jpg": [("cat", (1, 2, 3, 4)), ("person", (4, 5, 6, 7))]}


def test_roboflow_yolo_and_voc_exports_of_one_dataset_agree(dataset):
    """data.yaml with a names list and train/ val/ folders holding images/ beside labels/; the
    same dataset's VOC export (absolute pixels) is the independent check."""
    yolo_root, voc_root = dataset("roboflow_yolo"), dataset("roboflow_voc")
    from_yolo = read_annotations(yolo_root, None)
    from_voc = read_annotations(voc_root, None)
    assert from_yolo.errors == [] and from_voc.errors == []
    y = {k.replace("/images", ""): v for k, v in boxes_by_name(from_yolo, yolo_root).items()}
    assert y == boxes_by_name(from_voc, voc_root)
    assert y["train/train_001.jpg"] == [("label_0", (2, 1, 5, 2))]


def test_darknet_obj_data_and_names(dataset):
    root = dataset("darknet")
    got = read_annotations(root / "obj.data", None)  # the obj.data names its dataset's root
    ((image, boxes),) = got.boxes.items()
    assert image == root / "obj_train_data" / "1.jpg"
    assert [b.label for b in boxes] == ["label_2", "label_4"]
    w, h = 15, 10  # 1.jpg
    np.testing.assert_allclose(boxes[0].corners(), ((0.133333 - 0.266667 / 2) * w, (0.3 - 0.1) * h,
                                                    (0.133333 + 0.266667 / 2) * w, (0.3 + 0.1) * h))


def test_coco_results_list_with_ground_truth_sparse_ids_and_rle(dataset):
    root = dataset("cocoapi")
    got = read_annotations(root, None)
    assert got.errors == []
    by = boxes_by_name(got, root)
    assert by["COCO_val2014_000000000042.jpg"] == [("dog", (289.33, 229.66, 382.48, 268.63)),
                                                   ("dog", (258.15, 41.29, 606.41, 285.07))]
    assert [b[0] for b in by["COCO_val2014_000000000073.jpg"]] == ["motorcycle", "fire hydrant", "motorcycle"]
    crowd = got.boxes[root / "COCO_val2014_000000000074.jpg"][0]
    assert crowd.corners() == (0, 8, 37, 64) and crowd.attr("iscrowd") == "1"
    scores = [b.attr("score") for bs in got.boxes.values() for b in bs if b.attr("score")]
    assert sorted(scores) == ["0.236", "0.3", "0.318", "0.546", "0.726"]


def test_coco_results_alone_match_images_by_their_id(dataset, tmp_path):
    root = dataset("cocoapi")
    (root / "instances_val2014_trimmed.json").unlink()
    got = read_annotations(root / "instances_val2014_fakebbox100_results.json", None)
    assert got.errors == []
    assert [(b.label, b.attr("score")) for b in got.boxes[root / "COCO_val2014_000000000042.jpg"]] == [("18", "0.236")]


def test_coco_subfolders_names_without_extension_and_images_without_boxes(dataset):
    root = dataset("coco_cvat")
    got = read_annotations(root / "annotations" / "instances_default.json", None, images_root=root / "images")
    assert got.errors == []
    assert boxes_by_name(got, root) == {
        "images/day/frame_000001.jpg": [("car", (3.5, 4.25, 15.5, 14.25)), ("bus", (20, 5, 40, 30))],
        "images/night/frame_000002.jpg": [("car", (10, 10, 16, 16))],
        "images/night/frame_000003.jpg": []}
    assert got.sizes[root / "images/night/frame_000003.jpg"] == (64, 48)


def test_roboflow_coco_per_split_files(dataset):
    root = dataset("roboflow_coco")
    got = read_annotations(root, None)
    assert boxes_by_name(got, root) == {"train/a.jpg": [("b", (2, 2, 5, 3))],
                                        "val/b.jpg": [("a", (0, 0, 1, 2)), ("b", (0, 0, 1, 9))]}


def test_ultralytics_names_mapping_segments_and_empty_labels(dataset):
    root = dataset("ultralytics")
    got = read_annotations(root, None)
    assert got.errors == []
    w, h = 64, 48
    assert boxes_by_name(got, root) == {
        "images/train/street_jpg.rf.5c2f0a.jpg": [
            ("person", (24, 12, 40, 36)), ("car", (0, 30, 16, 42)),
            ("bus", (round(0.65 * w, 4), round(0.05 * h, 4), round(0.95 * w, 4), round(0.35 * h, 4)))],
        "images/val/lane_01.jpg": [("bicycle", tuple(round(v, 4) for v in (0.1 * w, 0.1 * h, 0.3 * w, 0.4 * h)))],
        "images/val/empty_frame.jpg": []}
    assert got.boxes[root / "images/val/lane_01.jpg"][0].attr("derived_from") == "segmentation"
    assert sum(r.derived for r in got.files) == 1


def test_ultralytics_pose_lines_keep_keypoints(dataset):
    root = dataset("ultralytics_pose")
    got = read_annotations(root, None)
    (box,) = got.boxes[root / "images/train/pose_01.jpg"]
    assert (box.label, box.corners()) == ("person", (16, 6, 48, 42))
    assert box.attr("keypoints") == "0.4 0.3 2 0.6 0.3 2 0.5 0.6 1" and box.attr("derived_from") is None


def test_yolo_prediction_files_keep_confidence_and_say_there_are_no_names(dataset):
    root = dataset("ultralytics_predict")
    got = read_annotations(root, None)
    assert [(b.label, b.attr("score")) for b in got.boxes[root / "bus.jpg"]] == [("0", "0.91234"), ("2", "0.4521")]
    assert any("labels are the class ids" in n for n in got.notes)


def test_yolo_classes_txt_beside_images(dataset):
    root = dataset("yolo_labelimg")
    got = read_annotations(root, None)
    assert [(b.label, tuple(round(v, 3) for v in b.corners())) for b in got.boxes[root / "img_0001.jpg"]] == [
        ("person", (24, 12, 40, 36)), ("dog", (0, 8, 16, 16))]


def test_tf_object_detection_csv_with_image_sizes(dataset):
    root = dataset("tf_od")
    got = read_annotations(root / "train_labels.csv", None)
    assert boxes_by_name(got, root) == {"raccoon-1.jpg": [("raccoon", (8, 5, 60, 55)), ("raccoon", (61, 2, 79, 20))],
                                        "raccoon-2.jpg": [("raccoon", (0, 0, 40, 30))]}
    assert got.sizes[root / "raccoon-1.jpg"] == (80, 60)


def test_keras_retinanet_headerless_csv_with_an_empty_image(dataset):
    root = dataset("retinanet")
    got = read_annotations(root / "annotations.csv", None)
    assert got.errors == []
    assert boxes_by_name(got, root) == {"images/img_001.jpg": [("cow", (10, 12, 50, 48)), ("cat", (52, 5, 70, 30))],
                                        "images/img_002.jpg": [], "images/img_003.jpg": [("cow", (1, 1, 20, 20))]}


def test_other_csv_headers_and_delimiters(dataset):
    root = dataset("csv")
    got = read_annotations(root, None)
    assert got.errors == []
    by = boxes_by_name(got, root)
    assert by["shelf.01.png"] == [("bottle", (3.5, 4, 20, 30.25)), ("can", (25, 4, 40, 18))]  # ';' delimited
    assert by["img0003.jpg"] == [("helmet", (6.7, 10.3, 10, 15)), ("person", (13.7, 20.2, 45.6, 63.6))]  # VoTT
    assert by["3.jpg"] == [("dog", (0, 2, 2, 4)), ("dog", (0, 0, 1, 1)), ("cat", (1, 1, 2, 2))]  # image_name,label_name
    assert [r.boxes for r in got.files] == [6, 2, 3]


def test_a_dataset_root_with_several_formats_reads_all_and_says_so(dataset, tmp_path):
    root = dataset("labelimg")
    shutil.copy(REAL / "csv" / "semicolon_export.csv", root / "extra.csv")
    make_image(root / "shelf.01.png", 64, 64)
    got = read_annotations(root, None)
    assert sorted(r.fmt for r in got.files) == ["csv", "voc", "voc"]
    assert any("several formats" in n for n in got.notes) and "several formats" in got.summary_text()
    only = read_annotations(root, None, fmt="voc")
    assert [r.fmt for r in only.files] == ["voc", "voc"]


def test_a_coco_file_in_annotations_finds_images_in_the_dataset_folder(dataset):
    root = dataset("coco_cvat")
    got = read_annotations(root / "annotations" / "instances_default.json", None)
    assert got.errors == [] and len(got.boxes) == 3


def test_an_ultralytics_dataset_file_of_any_name_gives_the_class_names(dataset):
    root = dataset("ultralytics")
    (root / "data.yaml").rename(root / "coco8-like.yaml")
    (root / "notes.yml").write_text("just: notes\n")  # a YAML without names is passed over
    got = read_annotations(root / "coco8-like.yaml", None)  # the dataset file names its root
    assert [b.label for b in got.boxes[root / "images/train/street_jpg.rf.5c2f0a.jpg"]] == ["person", "car", "bus"]


def test_mmdetection_samples(dataset):
    root = dataset("mmdetection")
    got = read_annotations(root, None)
    assert got.errors == []
    assert boxes_by_name(got, root) == {
        "fake1.jpg": [("bus", (0, 0, 20, 20)), ("car", (0, 0, 20, 20))], "fake2.jpg": [("bus", (0, 0, 20, 20))],
        "fake3.jpg": [],  # image id 0 is an id like any other; fake3 has no annotations
        "VOCdevkit/VOC2012/JPEGImages/000001.jpg": [("train", (139, 200, 207, 301))],  # <filename> says 000002.jpg
        "custom_dataset/images/000001.jpg": [("dog", (48, 240, 195, 371)), ("person", (8, 12, 352, 498))]}
