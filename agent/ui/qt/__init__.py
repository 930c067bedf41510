"""The UI process (docs/ui-process.md): Qt dialogs and the tray.

Only ``python -m agent.ui.qt`` imports this package; the daemon never does (it must not
load Qt: agent/ui/process/ is its side of the pipe).
"""
