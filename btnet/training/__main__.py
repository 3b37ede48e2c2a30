"""``python -m btnet.training CONFIG [...]``, also under ``torchrun --nproc_per_node N``."""

from __future__ import annotations

import sys

from btnet.cli.train_cmds import main

if __name__ == "__main__":
    sys.exit(main())
