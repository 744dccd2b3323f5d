"""Secrets kept out of messages and logs: a URL's user, password and query values.

>>> redacted("cannot read https://user:sk-123@api.example.com/v1?api-key=abc&v=2#gpt")
'cannot read https://***@api.example.com/v1?api-key=***&v=***#gpt'
"""

from __future__ import annotations

import re

__all__ = ["redacted"]

_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")  # to the last "@" before the path, as URLs are split
# a key holds no "?" (a run of them is then read in linear time) and may be empty ("&x?=b": "?=" is a key too)
_QUERY_VALUE = re.compile(r"([?&][^=&#?\s]*)=[^&#\s]*")


def redacted(text: str) -> str:
    """``text`` with every URL's user, password and query values hidden, for messages and logs.

    >>> redacted("cannot read https://user:sk-123@api.example.com/v1?api-key=abc&v=2#gpt")
    'cannot read https://***@api.example.com/v1?api-key=***&v=***#gpt'
    """
    return _QUERY_VALUE.sub(r"\1=***", _USERINFO.sub("***@", text))
