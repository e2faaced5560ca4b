import sys

from liberator.cli import main

sys.exit(main())
