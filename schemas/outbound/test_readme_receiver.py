"""The README's webhook receiver snippet, run as written against what our signer sends."""

import re
import time
from pathlib import Path

from schemas.outbound.signing import generate_secret, signed_headers

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify():
    text = README.read_text()
    match = re.search(r"<!-- receiver-snippet -->\n```python\n(.*?)```", text, re.S)
    assert match, "the receiver snippet is gone from the README"
    scope: dict[str, object] = {}
    exec(compile(match.group(1), "README receiver", "exec"), scope)  # the snippet, as a reader copies it
    return scope["verify"]


def test_the_readme_receiver_accepts_our_signatures_and_refuses_the_rest():
    verify = readme_verify()
    old, new = generate_secret(), generate_secret()
    body = b'{"event":"conversion.tracked","conversion_id":"cv_1","value":99.99}'
    now = int(time.time())
    during_rotation = signed_headers("msg_1", now, body, [new, old])
    assert verify(new.text, during_rotation, body) and verify(old.text, during_rotation, body)
    assert not verify(new.text, during_rotation, body + b" ")  # a changed body
    assert not verify(generate_secret().text, during_rotation, body)  # another goal's secret
    assert not verify(new.text, signed_headers("msg_1", now - 3600, body, [new]), body)  # replayed later
    assert not verify(new.text, {"webhook-id": "msg_1"}, body)  # headers missing
    capitalised = {k.title(): v for k, v in during_rotation.items()}
    assert verify(new.text, capitalised, body)  # header names are case-insensitive
