"""The daemon's side of the Qt UI process (docs/ui-process.md); imports no Qt."""

from agent.ui.process.port import QtProcessUI

__all__ = ["QtProcessUI"]
