"""Errors a user can act on (bad input, a missing table, an unreachable store): jobs report them
as one clear line and exit 1, while anything else keeps its stack trace."""


class UserError(Exception):
    pass
