"""`python -m appliance` runs the command line."""

import sys

from appliance.cli import main

sys.exit(main())
