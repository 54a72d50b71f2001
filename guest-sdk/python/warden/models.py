"""The shapes of values the host writes, as Slack Machine names them.

The help manual (the shared key `manual`) reads back from storage as a
`Record`, whose keys are attributes: `manual.human`, `manual.robot`, and
for each handler `help.command` and `help.help`. These classes describe
the same shapes for type annotations and for plugins that build them::

    from warden.models import Manual, HumanHelp
"""

from dataclasses import dataclass, field


@dataclass
class HumanHelp:
    """One handler's line of the manual: `command: help`."""

    command: str
    help: str


@dataclass
class Manual:
    """The manual: by plugin (its description, or its identity), the
    handlers' lines (`human`, keyed by `IDENTITY.HANDLER`) and every
    route's pattern (`robot`, `@botname ` before `respond_to` ones)."""

    human: dict = field(default_factory=dict)
    robot: dict = field(default_factory=dict)
