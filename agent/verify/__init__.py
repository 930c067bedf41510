"""Verification of received signatures: ``signature.verify`` and ``imza-agent verify``."""
