"""Files that ship inside the package (``models/weights/``), each folder with its licence and notice.

    weights/yolox_nano/       YOLOX-nano person detector (Apache-2.0; LICENSE, NOTICE)
    weights/deeplabv3_mnv2/   DeepLab-v3 MobileNetV2, VOC (Apache-2.0; LICENSE, NOTICE)
    weights/posemask_unet/    the default PoseUNet of `posemask masks`: model.pt, crf.json
                              (its dense-CRF parameters), quality.json (its quality
                              calibration, models/evaluation/quality.py) and MODEL_CARD.md

Nothing here is downloaded: `posemask masks` runs offline from these files.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
YOLOX_MODEL = WEIGHTS_DIR / "yolox_nano" / "yolox_nano_416x416.onnx"
DEEPLAB_MODEL = WEIGHTS_DIR / "deeplabv3_mnv2" / "deeplab_v3_1_default_1.onnx"
SHIPPED_DIR = WEIGHTS_DIR / "posemask_unet"
SHIPPED_MODEL = SHIPPED_DIR / "model.pt"
SHIPPED_CRF = SHIPPED_DIR / "crf.json"
# The name under which `posemask masks --model` and GenerateMasks know the shipped model.
SHIPPED_NAME = "shipped"


def require(path: Path) -> Path:
    """`path`, or FileNotFoundError saying the package is incomplete (reinstall it)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing from the installed package ({path}); reinstall posemask")
    return path
