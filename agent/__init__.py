"""imza-agent: a local signing agent for web portals."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
