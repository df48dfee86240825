"""The public stream's contract (issue 14): CloudEvents 1.0 structured JSON messages whose ``data`` has a
JSON Schema generated from the models here and kept beside them (``*.schema.json``). No I/O."""
