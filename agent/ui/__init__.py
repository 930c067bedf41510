"""Dialog backends (the Qt UI process, scripted, none) and the tray; the port they implement
is ``agent.app.dialogs``."""
