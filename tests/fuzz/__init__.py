"""Fuzzing: the atheris targets (``fuzz_*.py``, run as scripts by tests/test_fuzz_atheris.py)
and the seeds and mutators they share with tests/test_fuzz_daemon.py."""
