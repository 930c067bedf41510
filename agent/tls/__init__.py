"""The agent's local TLS material (a per-machine CA whose key is destroyed, and the
loopback leaf it issued) and installing that CA as a trust anchor in browsers."""
