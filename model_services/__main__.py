import sys

from model_services.cli import main

sys.exit(main())
