"""Which head of a multi-head foundation a job uses."""

from core.errors import InvalidSpecError

# Head names mace and its users give the head meant by default.
DEFAULT_HEAD_NAMES = ("default", "Default")
REPLAY_HEAD = "pt_head"  # mace's replay head, left over in fine-tuned multi-head models


def default_head(heads: tuple[str, ...]) -> str:
    """The head a job fine-tunes when it names none: one called "default", else the first that is
    not mace's replay head (what mace's own remove_pt_head keeps), else the first."""
    for name in DEFAULT_HEAD_NAMES:
        if name in heads:
            return name
    return next((head for head in heads if head != REPLAY_HEAD), heads[0])


def choose_head(name: str, heads: tuple[str, ...], requested: str | None) -> str:
    """The foundation head a job uses; an unknown head is the user's error."""
    if requested is None:
        return default_head(heads)
    if requested not in heads:
        raise InvalidSpecError(
            f"foundation model {name} has no head {requested!r}; its heads: "
            f"{', '.join(heads)} (default {default_head(heads)})"
        )
    return requested
