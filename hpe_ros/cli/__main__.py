"""`python -m hpe_ros.cli` = `hpe-ros`."""
import sys

from hpe_ros.cli import main

if __name__ == "__main__":
    sys.exit(main())
