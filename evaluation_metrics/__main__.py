"""``python -m evaluation_metrics``: the evaluation command line."""
import sys

from evaluation_metrics.evaluation_metrics import main

if __name__ == "__main__":
    sys.exit(main())
