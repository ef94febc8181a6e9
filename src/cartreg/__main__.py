import sys

from cartreg.cli.main import main

sys.exit(main())
