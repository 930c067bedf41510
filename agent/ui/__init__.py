"""Dialogs: the UserInterface port and its backends."""
