"""``python -m btnet.train CONFIG ...`` (and ``torchrun ... -m btnet.train``): same as ``btnet train``."""

import sys

from btnet.training.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
