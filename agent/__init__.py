"""imza-agent: a local signing agent for web portals."""

__version__ = "0.2.0"
PROTOCOL_VERSION = 1
