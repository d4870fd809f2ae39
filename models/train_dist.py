"""`python -m models.train_dist` / `torchrun ... -m models.train_dist`: distributed training from
cache files, the command docs/training.md documents, kept where users call it since models/ became
packages; the code is models.network.train_dist."""

from __future__ import annotations

from models.network.train_dist import main

if __name__ == "__main__":
    raise SystemExit(main())
