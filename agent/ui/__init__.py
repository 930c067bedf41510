"""Dialog backends (tkinter, scripted, none) and the tray; the port they implement is
``agent.app.dialogs``."""
