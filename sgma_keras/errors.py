"""The one base class of the errors whose message is meant for the user.

Every problem a user can fix without reading code (a config key, a data file, a
checkpoint that does not match its config, a folder that cannot be written) raises a
subclass of `UserError` whose message names the file, key or value and what was
expected. The command-line entry points print such a message and exit non-zero
without a traceback; any other exception is a bug and keeps its traceback.

This module imports nothing, so every layer of the package can use it.
"""


class UserError(ValueError):
    """An input problem explained for the user (no traceback needed)."""
