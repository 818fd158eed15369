"""``python -m llmbook.experiments build NAME|all [--resume]``: the project's artifact builds."""

from llmbook.experiments.artifacts import main

raise SystemExit(main())
