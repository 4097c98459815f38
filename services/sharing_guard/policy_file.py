"""Loading the policy document from disk: the bundled default or an operator's file."""

from importlib import resources
from pathlib import Path

from sharing_guard.core.policy import Policy, parse_policy


def load_policy(path: Path | None = None) -> Policy:
    """Read and parse the policy at ``path``, or the bundled default when ``None``.

    Raises :class:`~sharing_guard.core.policy.PolicyError` for an invalid document and
    ``OSError`` when the file cannot be read.
    """
    if path is None:
        text = (resources.files("sharing_guard") / "policy.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return parse_policy(text)
