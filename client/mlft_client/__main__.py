import sys

from mlft_client.cli import main

sys.exit(main())
