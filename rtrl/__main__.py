import sys

from rtrl.cli import main

sys.exit(main())
