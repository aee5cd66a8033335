"""One exception type for every user-facing failure, carrying its exit code.

The CLI turns it into a single ``error: ...`` line; library users catch it.
"""

EXIT_USAGE = 2        # bad input: files, flags, data
EXIT_PARITY = 3       # an exported model disagrees with its source
EXIT_ACCURACY = 4     # a quantized model lost more accuracy than allowed


class CompressError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code
