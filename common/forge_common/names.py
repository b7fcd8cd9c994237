"""The rule for job type names, shared by the broker (which refuses a bad one) and workerd
(which refuses to register a handler the broker would refuse)."""

from __future__ import annotations

import re

TYPE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
"""A job type name, matched whole (``TYPE_NAME.fullmatch``). The broker writes names into its
JSON batches unescaped, so the rule admits nothing JSON would escape."""

TYPE_NAME_RULE = "must be 1 to 128 characters of [A-Za-z0-9_.:-]"
"""What an error says a bad name breaks."""
