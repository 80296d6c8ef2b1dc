"""Person detection: a `Detector` turns one camera frame into person boxes, in memory only.

`OnnxDetector` runs YOLOX-nano (models/manifest.toml) with onnxruntime on the CPU: letterbox the
frame into the model's input, run it, decode the grid outputs, keep the person class and merge
overlapping boxes (NMS). The model file declares a fixed 416x416 input; the graph itself works
at any size that is a multiple of 32, so the declared shape is made symbolic in memory on load,
which lets a 16:9 camera use 640x384 without wasting half the input on padding.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from appliance.config.model import VisionSettings
from appliance.events import FloatArray
from appliance.vision.models import model_file

logger = logging.getLogger(__name__)

PAD_VALUE = 114
STRIDES = (8, 16, 32)
PERSON = 0

# A BGR image, (height, width, 3) uint8; typed loosely because OpenCV returns untyped arrays.
Frame = npt.NDArray[Any]


class Detector(Protocol):
    """Finds people in a frame."""

    def detect(self, frame_bgr: Frame) -> FloatArray:
        """Person boxes in frame pixels: shape (n, 5), rows of (left, top, width, height, score)."""
        ...


class DetectorError(RuntimeError):
    """The detector could not be loaded or run."""


def symbolic_input(model_bytes: bytes) -> bytes:
    """The model with its input height and width (and output rows) declared symbolic.

    Intermediate shapes recorded at export time would contradict other sizes, so they are
    dropped; onnxruntime infers them again.
    """
    model = onnx.load_from_string(model_bytes)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise DetectorError(f"expected a 4-d image input, got {len(dims)} dimensions")
    dims[2].dim_param = "height"
    dims[3].dim_param = "width"
    out = model.graph.output[0].type.tensor_type.shape.dim
    if len(out) == 3:
        out[1].dim_param = "anchors"
    del model.graph.value_info[:]
    return model.SerializeToString()


def grid_for(height: int, width: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Cell offsets (n, 2) and strides (n, 1) of YOLOX's output rows for an input of this size."""
    cells = []
    strides = []
    for s in STRIDES:
        gy, gx = np.mgrid[0 : height // s, 0 : width // s]
        cells.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
        strides.append(np.full(gx.size, s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)[:, None]


def decode(
    rows: npt.NDArray[np.float32], cells: npt.NDArray[np.float32], strides: npt.NDArray[np.float32], scale: float,
    score_min: float,
) -> FloatArray:
    """YOLOX output rows (n, 85) -> person candidates (m, 5) in frame pixels, before NMS."""
    score = rows[:, 4] * rows[:, 5 + PERSON]
    keep = np.flatnonzero(score >= score_min)
    if keep.size == 0:
        return np.zeros((0, 5))
    r = rows[keep]
    centre = (r[:, :2] + cells[keep]) * strides[keep]
    size = np.exp(r[:, 2:4]) * strides[keep]
    out = np.empty((keep.size, 5))
    out[:, :2] = (centre - size / 2) / scale
    out[:, 2:4] = size / scale
    out[:, 4] = score[keep]
    return out


def suppress(candidates: FloatArray, iou: float) -> FloatArray:
    """Non-maximum suppression: of boxes overlapping more than `iou`, keep the surest."""
    if len(candidates) == 0:
        return candidates
    keep = cv2.dnn.NMSBoxes(candidates[:, :4].tolist(), candidates[:, 4].tolist(), 0.0, iou)
    idx = np.asarray(keep, dtype=np.int64).ravel()
    out = candidates[idx]
    return out[np.argsort(-out[:, 4], kind="stable")]


class Letterbox:
    """Reusable input buffers: the frame scaled into the model input keeping its aspect, top-left."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
        self.blob = np.empty((1, 3, height, width), dtype=np.float32)
        self._filled: tuple[int, int] = (height, width)

    def fill(self, frame: Frame) -> float:
        """Put `frame` into `self.blob`; returns the scale from frame to input pixels."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be an (h, w, 3) uint8 BGR image, got {frame.shape} {frame.dtype}")
        fh, fw = frame.shape[:2]
        scale = min(self.height / fh, self.width / fw)
        nh, nw = min(self.height, round(fh * scale)), min(self.width, round(fw * scale))
        if (nh, nw) != self._filled:
            self.canvas[:] = PAD_VALUE
            self._filled = (nh, nw)
        if (nh, nw) == (self.height, self.width) == (fh, fw):
            source = frame  # already the input size: no resize, no padding
        else:
            self.canvas[:nh, :nw] = frame if (nh, nw) == (fh, fw) else cv2.resize(
                frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
            source = self.canvas
        for c, plane in enumerate(cv2.split(source)):
            self.blob[0, c] = plane
        return scale


def session_options(threads: int) -> ort.SessionOptions:
    """CPU session settings: `threads` for one inference, no busy-waiting between frames."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class OnnxDetector:
    """YOLOX person detector on onnxruntime's CPU provider.

    Args:
        model: path of the ONNX file (already checked against the manifest).
        input_size: model input (width, height), multiples of 32. Larger finds smaller (farther)
            people but costs time roughly in proportion to the pixel count.
        threads: CPU threads for one inference; with one worker process per core, 1 is best.
        score_min: weakest person score kept.
        nms_iou: overlap above which two boxes count as one person.
    """

    def __init__(
        self, model: Path, input_size: tuple[int, int] = (640, 384), threads: int = 1, score_min: float = 0.1,
        nms_iou: float = 0.45,
    ) -> None:
        width, height = input_size
        if width % 32 or height % 32 or width <= 0 or height <= 0:
            raise ValueError(f"input size must be positive multiples of 32, got {input_size}")
        try:
            graph = symbolic_input(model.read_bytes())
            self.session = ort.InferenceSession(graph, session_options(threads), providers=["CPUExecutionProvider"])
        except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError, RuntimeError) as err:
            raise DetectorError(f"cannot load the detector model {model}: {err}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.input_size = (width, height)
        self.score_min = score_min
        self.nms_iou = nms_iou
        self.letterbox = Letterbox(width, height)
        self.cells, self.strides = grid_for(height, width)
        self.model_cpu_s = 0.0  # CPU time spent inside session.run, for the benchmarks
        logger.info("detector %s loaded: input %sx%s, %s thread(s)", model.name, width, height, threads)

    @classmethod
    def from_settings(cls, settings: VisionSettings, folder: Path | None = None) -> OnnxDetector:
        """The detector the `[vision]` settings describe, from the installed and checked model file."""
        return cls(model_file(settings.model, folder), settings.input_size, settings.threads, settings.score_min,
                   settings.nms_iou)

    def infer(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The bare model run on a prepared input blob: output rows (n, 85)."""
        started = time.process_time()
        out = self.session.run(None, {self.input_name: blob})[0]
        self.model_cpu_s += time.process_time() - started
        return np.asarray(out[0], dtype=np.float32)

    def detect(self, frame_bgr: Frame) -> FloatArray:
        scale = self.letterbox.fill(frame_bgr)
        rows = self.infer(self.letterbox.blob)
        boxes = suppress(decode(rows, self.cells, self.strides, scale, self.score_min), self.nms_iou)
        fh, fw = frame_bgr.shape[:2]
        np.clip(boxes[:, 0], 0, fw, out=boxes[:, 0])
        np.clip(boxes[:, 1], 0, fh, out=boxes[:, 1])
        boxes[:, 2] = np.minimum(boxes[:, 2], fw - boxes[:, 0])
        boxes[:, 3] = np.minimum(boxes[:, 3], fh - boxes[:, 1])
        return boxes
