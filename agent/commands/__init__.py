"""The commands a person types that are about the agent itself rather than signing:
``run`` and ``demo`` (never a second agent), ``status``, ``stop`` and ``config``.
``agent/cli.py`` parses the command line and calls them. Every message is translated
(agent/i18n); machine output (``--json``) is not.
"""
