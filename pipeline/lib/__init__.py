"""The pipeline's plain code: no luigi, no task objects (a test checks the imports).

Each stage's task in ``pipeline/<stage>.py`` resolves its inputs, calls one function here (or in
``models/``) and writes its output through ``files``. One module per file format:

    files          atomic writes, locks, JSON/JSONL, short hashes, paths that stay inside a root
    records        persons.jsonl: one person instance per line, and the masks a record points to
    annotations    COCO / VOC annotations -> persons.jsonl records (streaming, skip reasons counted)
    cachebuild     persons.jsonl -> cache.h5 (crops, masks, pose maps, priors; sharded or not)
    predictions    pred.h5: per-sample probabilities of one method
    keypoint_files COCO keypoint files and per-photo sidecars for the nightly job
    folder         photo folders: discovery, shard keys, content hashes, image headers
    fetch          downloads and safe archive extraction
    report         the EvaluateAll report (Markdown, HTML, CSV, plots) from finished files
"""
