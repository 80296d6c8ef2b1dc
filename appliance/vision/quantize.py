"""Int8 quantisation of the person detector (onnxruntime.quantization), for a speed/recall trade.

Static quantisation with per-channel weights needs opset 13 and calibration frames; the frames
are letterboxed like real input and stay in memory. Whether the result is worth running is the
benchmark's question (`appliance bench vision` compares speed and PETS recall); the appliance
runs the float model unless `[vision] model` names a quantised one in the manifest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnx.version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from appliance.vision.detector import Frame, Letterbox, symbolic_input


class _Frames(CalibrationDataReader):
    def __init__(self, name: str, blobs: Sequence[npt.NDArray[np.float32]]) -> None:
        self._name = name
        self._it: Iterator[npt.NDArray[np.float32]] = iter(blobs)

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        blob = next(self._it, None)
        return None if blob is None else {self._name: blob}


def quantize_detector(model: Path, out: Path, calibration: Sequence[Frame], input_size: tuple[int, int]) -> Path:
    """Write an int8 (QDQ, per-channel weights) copy of `model` to `out`, calibrated on `calibration`.

    Args:
        model: the float ONNX detector.
        out: where to write the quantised model.
        calibration: a few dozen typical frames (BGR); more cover more lighting.
        input_size: (width, height) the frames are letterboxed to.
    """
    if not calibration:
        raise ValueError("quantisation needs calibration frames")
    graph = onnx.load_from_string(symbolic_input(model.read_bytes()))
    name = graph.graph.input[0].name
    graph = onnx.version_converter.convert_version(graph, 13)
    box = Letterbox(*input_size)
    blobs = []
    for frame in calibration:
        box.fill(frame)
        blobs.append(box.blob.copy())
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        plain = Path(tmp) / "opset13.onnx"
        prepared = Path(tmp) / "prepared.onnx"
        onnx.save(graph, str(plain))
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), _Frames(name, blobs), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return out
