"""The pipeline's plain code: no luigi, no task objects (a test checks the imports).

Each stage's task in ``pipeline/<stage>.py`` resolves its inputs, calls one function here (or in
``models/``) and writes its output through ``files``. Each module's docstring lists its API.

    files            atomic writes, locks, JSON/JSONL, short hashes, paths that stay inside a root
    images           reading photos: one decoder for every stage (OpenCV; RGB out)
    pools            ordered parallel maps over a fork pool, a bounded number of items in flight
    stopping         how a night stops on SIGTERM / SIGINT, and the exit code it stops with

  datasets (DownloadCOCO, DownloadVOC)
    fetch            a dataset folder: an existing copy used as is, or its archives downloaded and recorded
    transfer         one URL -> one verified file over HTTP (resume, retries, mirrors)
    checksums        digests, the hashed .part file, the size and checksum check
    archives         safe extraction of zip and tar archives
    dataset_layouts  whether a folder already holds a usable COCO / VOC copy

  person records and the cache (COCOPersons, VOCPersons, BuildCache)
    records          persons.jsonl: one person instance per line, and the masks a record points to
    annotations      COCO annotations -> persons.jsonl records (streaming, skip reasons counted)
    json_stream      a top-level JSON object read one array item at a time
    estimated_poses  VOC, and datasets without keypoints: records with estimated, checked poses
    cachebuild       persons.jsonl -> cache.h5 samples (a process pool, sharded or not)
    cachefile        cache.h5: layout, writer, shard index, readers

  evaluation (PredictMasks, Evaluate, EvaluateAll)
    predictions      pred.h5: per-sample probabilities of one method
    scoring          one method's predictions scored against one evaluation set's ground truth
    report           the EvaluateAll report (Markdown, HTML, CSV, plots) from finished files

  the nightly job (GenerateMasks, MaskShard, TrackKeypoints)
    folder           photo folders: discovery, shard keys, content hashes, image headers
    keypoint_files   COCO keypoint files and per-photo sidecars
    night            a night's plan (photos found, hashed, sharded) and its summary
    shard_folders    shard folder names, earlier rows, intact shards
    mask_shard       one shard: every photo processed or reused, journal, manifest
    photo_masker     one photo -> its masks, manifest row and COCO records
    mask_outputs     the mask PNGs and COCO records a photo leaves
    review           OUTPUT/review/index.html after a night
    tracks           video frames and keypoint tracks
"""
