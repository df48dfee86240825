"""The JSON Schema files of the stream's ``data``, generated from the models (a test keeps the committed
files equal to what this generates: ``python -m schemas.stream.schema_files`` rewrites them)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.alerts import ALERT_DATA_SCHEMA_PATH, AlertData
from schemas.stream.models import CONVERSION_DATA_SCHEMA_PATH, ConversionData

HERE = Path(__file__).parent
FILES = {
    CONVERSION_DATA_SCHEMA_PATH: HERE / "conversion.v1.schema.json",
    ALERT_DATA_SCHEMA_PATH: HERE / "alert.v1.schema.json",
}
MODELS: dict[str, type[BaseModel]] = {
    CONVERSION_DATA_SCHEMA_PATH: ConversionData,
    ALERT_DATA_SCHEMA_PATH: AlertData,
}


def generated(path: str) -> str:
    model = MODELS[path]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema()}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stored(path: str) -> bytes:
    """The committed file for ``path`` (``conversion/v1``); KeyError for an unknown one."""
    return FILES[path].read_bytes()


if __name__ == "__main__":
    for name, file in FILES.items():
        file.write_text(generated(name))
        print(f"wrote {file}")
