"""Bad input to ``scalectl agent``: one line naming the option and the fix, exit code 2."""

from __future__ import annotations


class AgentInputError(ValueError):
    """An agent option or the torchrun arguments given to it are unusable."""

    user_error = True
