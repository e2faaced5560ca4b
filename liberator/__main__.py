import sys

from liberator.launch import main

sys.exit(main())
