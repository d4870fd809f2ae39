"""posemask's science side: person masks from photos and body keypoints, in plain Python (numpy,
OpenCV, torch); never luigi, never `pipeline` (the Luigi tasks and the `posemask` CLI call it).

Sub-packages by concern, in layers: a package imports only packages at or below its own level
(tests/test_layers.py, MODEL_LAYERS, checks it).

    models.utils        plain helpers: dataclass <-> dict, atomic files, the shipped model files
    models.sample       one person as a sample: skeleton, COCO keypoints, crop, pose map, prior,
                        augmentation, ground-truth masks
    models.evaluation   how good a mask is: metrics, COCO scoring, quality without truth, pictures
    models.classical    classical segmenters: prior, GrabCut, GMM graph cut, cooperative cut, dense CRF
    models.network      the pose-guided U-Net: its config, model, data, training and inference
    models.people       people in photos: detection, pose, whose pose, tracking, peers, and the
                        masks of every person of a photo

models/weights/ holds the files that ship with the package (models.utils.assets).
"""
