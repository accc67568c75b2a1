"""The one error type the platform commands raise: its message is the one-line
instruction the user sees (the CLI prints it without a traceback)."""


class PlatformError(RuntimeError):
    pass
