"""The real YOLOX-nano detector finds people in real footage, at both input sizes, in memory."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.config.model import VisionSettings
from appliance.vision.boxes import iou_matrix
from appliance.vision.detector import Letterbox, OnnxDetector, decode, grid_for, suppress
from appliance.vision.models import model_file
from appliance.vision.scoring import read_mot
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def pets_frame_one() -> tuple[np.ndarray, np.ndarray]:
    cap = cv2.VideoCapture(str(shared_path("data", "pets09-s2l1", "vtest.avi")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    truth = read_mot(shared_path("data", "pets09-s2l1", "gt.txt"))
    return frame, truth[truth[:, 0] == 1]


@pytest.mark.parametrize("size", [(640, 384), (416, 416)])
def test_the_detector_finds_every_annotated_person_in_a_real_frame(pets_frame_one, size):
    frame, truth = pets_frame_one
    detector = OnnxDetector(model_file("yolox_nano"), size)
    boxes = detector.detect(frame)
    assert boxes.ndim == 2 and boxes.shape[1] == 5
    sure = boxes[boxes[:, 4] >= 0.5]
    assert iou_matrix(truth[:, 2:6], sure).max(axis=1).min() >= 0.5  # each of the 3 people found
    assert np.all(boxes[:, 4] >= 0.1) and np.all(boxes[:, 4] <= 1.0)
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 0] + boxes[:, 2] <= frame.shape[1] + 1e-6)


def test_an_empty_picture_has_no_people(person_detector):
    assert person_detector.detect(np.full((384, 640, 3), 128, np.uint8)).shape == (0, 5)


@pytest.mark.parametrize(
    "frame",
    [np.zeros((384, 640), np.uint8), np.zeros((384, 640, 4), np.uint8), np.zeros((384, 640, 3), np.float32)],
)
def test_a_frame_that_is_not_a_bgr_image_is_refused(person_detector, frame):
    with pytest.raises(ValueError, match="uint8 BGR image"):
        person_detector.detect(frame)


@pytest.mark.parametrize("size", [(640, 380), (0, 384), (100, 64)])
def test_input_sizes_must_be_multiples_of_32(size):
    with pytest.raises(ValueError, match="multiples of 32"):
        OnnxDetector(model_file("yolox_nano"), size)


def test_letterbox_keeps_the_aspect_at_the_top_left_and_pads_with_114():
    box = Letterbox(640, 384)
    frame = np.full((576, 768, 3), 7, np.uint8)
    scale = box.fill(frame)
    assert scale == pytest.approx(384 / 576)
    assert box.blob.shape == (1, 3, 384, 640)
    assert box.blob[0, :, :, :512].max() == 7  # the frame, 768 * 2/3 = 512 wide
    assert box.blob[0, :, :, 512:].min() == 114  # the padding


def test_decoding_puts_a_cell_prediction_back_in_frame_pixels():
    cells, strides = grid_for(64, 64)  # 8x8 + 4x4 + 2x2 cells
    rows = np.zeros((len(cells), 85), np.float32)
    i = 9  # stride-8 cell (1, 1)
    rows[i, :4] = [0.5, 0.5, np.log(2.0), np.log(4.0)]
    rows[i, 4], rows[i, 5] = 0.9, 0.8
    rows[i + 1, 4], rows[i + 1, 6] = 0.9, 0.9  # a confident non-person is ignored
    out = decode(rows, cells, strides, scale=0.5, score_min=0.1)
    assert out.shape == (1, 5)
    # centre (1.5 * 8, 1.5 * 8) = (12, 12), size (16, 32), all divided by the scale 0.5
    assert out[0] == pytest.approx([(12 - 8) / 0.5, (12 - 16) / 0.5, 32.0, 64.0, 0.72])


def test_overlapping_boxes_of_one_person_are_merged_keeping_the_surest():
    boxes = np.array([[10, 10, 40, 100, 0.6], [12, 11, 40, 100, 0.9], [200, 10, 40, 100, 0.5]], dtype=float)
    kept = suppress(boxes, 0.45)
    assert kept[:, 4].tolist() == [0.9, 0.5]


def test_settings_choose_the_input_size_and_thresholds():
    det = OnnxDetector.from_settings(VisionSettings(input_size=(416, 416), score_min=0.3))
    assert det.input_size == (416, 416) and det.score_min == 0.3
    assert det.cells.shape == (3549, 2)  # the model's own 416x416 layout
