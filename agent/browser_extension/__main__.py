"""``python -m agent.browser_extension``: the same as ``imza-agent extension``."""

from agent.browser_extension import main

raise SystemExit(main())
