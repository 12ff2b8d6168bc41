"""`python -m worker`, so subprocesses (the demo, tests) start the worker as the console script does."""

from worker.cli import main

raise SystemExit(main())
