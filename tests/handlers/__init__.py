"""Handler modules that workerd subprocesses load in the tests (``--handlers tests.handlers.jobs``)."""
