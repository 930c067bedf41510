"""Key stores: PKCS#11 tokens (in worker processes), PKCS#12 files and the demo identity."""
