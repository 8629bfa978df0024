"""`python -m hpe_ros.cli` = `hpe-ros`."""
import sys

from hpe_ros.cli import main

sys.exit(main())
