"""Train the shipped model with the repository's recipe and copy it into the package.

    python scripts/ship_model.py            # (make shipped-model) in the repository root

Builds TuneCRF(model=unet-coco) (which trains TrainModel first) with the settings in force
(pipeline/defaults.cfg + ./luigi.cfg), then copies its model.pt and crf.json into
models/weights/posemask_unet/ and prints their sha256 for MODEL_CARD.md. Two CPU runs of the same
commit and settings give the same recipe but not always the same bytes (float reductions depend on
threading); measured on the sample: mean IoU within 0.002 of each other.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import luigi  # noqa: E402

from models.assets import SHIPPED_CRF, SHIPPED_MODEL  # noqa: E402
from pipeline import TuneCRF  # noqa: E402
from pipeline.train import MODELS  # noqa: E402


def main() -> int:
    tune = TuneCRF(model="unet-coco")
    if not luigi.build([tune], local_scheduler=True, log_level="WARNING"):
        print("ship_model: training or CRF tuning failed", file=sys.stderr)
        return 1
    model = Path(MODELS["unet-coco"]().output()["model"].path)
    crf = Path(tune.output()["crf"].path)
    for source, target in ((model, SHIPPED_MODEL), (crf, SHIPPED_CRF)):
        shutil.copyfile(source, target)
        print(f"{target.relative_to(REPO)}  sha256 {hashlib.sha256(target.read_bytes()).hexdigest()}  from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
