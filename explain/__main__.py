"""`python -m explain ...` (and `torchrun -m explain ...`): the command line."""
import sys

from .cli.main import main

sys.exit(main())
