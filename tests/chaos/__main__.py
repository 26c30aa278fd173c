"""python -m tests.chaos --seeds 1000 [--start S] [--jobs 2] [--concurrency K] [--seed N --verbose]"""

import sys

from tests.chaos.runner import main

if __name__ == "__main__":
    sys.exit(main())
