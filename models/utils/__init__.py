"""Plain helpers of every models package (standard library only: `posemask --help` imports this).

from_plain_dict(cls, data), ClosesOnExit     dataclass configs from plain dicts; the context-manager
                                             protocol of the model wrappers (plain.py)
atomic_path(target), temp_path_for(target), remove_stale_temps(target)   atomic files (atomic.py)
require(path), WEIGHTS_DIR, YOLOX_MODEL, DEEPLAB_MODEL, SHIPPED_DIR, SHIPPED_MODEL, SHIPPED_CRF,
SHIPPED_NAME                                 the files that ship in models/weights/ (assets.py)
"""

from models.utils.assets import (
    DEEPLAB_MODEL,
    SHIPPED_CRF,
    SHIPPED_DIR,
    SHIPPED_MODEL,
    SHIPPED_NAME,
    WEIGHTS_DIR,
    YOLOX_MODEL,
    require,
)
from models.utils.atomic import atomic_path, remove_stale_temps, temp_path_for
from models.utils.plain import ClosesOnExit, from_plain_dict

__all__ = [
    "DEEPLAB_MODEL",
    "SHIPPED_CRF",
    "SHIPPED_DIR",
    "SHIPPED_MODEL",
    "SHIPPED_NAME",
    "WEIGHTS_DIR",
    "YOLOX_MODEL",
    "ClosesOnExit",
    "atomic_path",
    "from_plain_dict",
    "remove_stale_temps",
    "require",
    "temp_path_for",
]
