"""What depends on the operating system and the desktop: where browsers look for native
messaging hosts, and (as it moves here) the other per-platform registrations.

Only what exists is here: the Linux (XDG) locations, plus the macOS directories the
native messaging manifests already knew. Windows registers through its installer.
"""
