"""Classical person segmenters, the baselines of the network and its refinement (imports
models.evaluation, models.sample and models.utils only).

    baselines.py   prior_baseline, grabcut_baseline, slic_grabcut_baseline: one crop -> (H,W) mask;
                   grabcut_person(image, box, ...) in a photo, grabcut_region, box_in_region, GRABCUT_MARGIN
    graphcut.py    fit_gmm, gmm_graph_cut, gmm_graphcut_baseline, slic_gmm_graphcut_baseline
    coopcut.py     cooperative_cut, coopcut_baseline
    crf.py         CRFParams, refine(image, prob, params), grid_search(...), mean_iou(...),
                   DEFAULT_COARSE_GRID, DEFAULT_REFINE_FACTOR

pipeline/baselines.py takes the modules baselines, graphcut and coopcut themselves (its registry
names their functions).
"""

from models.classical.baselines import (
    GRABCUT_MARGIN,
    box_in_region,
    grabcut_baseline,
    grabcut_person,
    grabcut_region,
    prior_baseline,
    slic_grabcut_baseline,
)
from models.classical.coopcut import coopcut_baseline
from models.classical.crf import DEFAULT_COARSE_GRID, DEFAULT_REFINE_FACTOR, CRFParams, grid_search, mean_iou, refine
from models.classical.graphcut import gmm_graphcut_baseline

__all__ = [
    "DEFAULT_COARSE_GRID",
    "DEFAULT_REFINE_FACTOR",
    "GRABCUT_MARGIN",
    "CRFParams",
    "box_in_region",
    "coopcut_baseline",
    "gmm_graphcut_baseline",
    "grabcut_baseline",
    "grabcut_person",
    "grabcut_region",
    "grid_search",
    "mean_iou",
    "prior_baseline",
    "refine",
    "slic_grabcut_baseline",
]
