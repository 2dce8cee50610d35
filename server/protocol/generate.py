"""Regenerate the checked-in protobuf stubs from proto/: `python -m server.protocol.generate`.

grpc_tools writes modules that register `inference.*` in protobuf's default
descriptor pool, where tritonclient registers the same names; importing both
then fails with "duplicate symbol". We rewrite the generated modules so they
build their messages in Tau's private pool (`server.protocol.pool`) and import
each other relatively, which lets Tau and tritonclient share one process.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "proto"
STUB_DIR = Path(__file__).resolve().parent
PROTO_FILES = ("model_config.proto", "grpc_service.proto")
HEADER = "# Generated from proto/ by `python -m server.protocol.generate`. Do not edit.\n"


def _rewrite(source: str) -> str:
    source = source.replace("_descriptor_pool.Default()", "_tau_pool.POOL")
    source = source.replace(
        "from google.protobuf import descriptor_pool as _descriptor_pool\n",
        "from google.protobuf import descriptor_pool as _descriptor_pool  # noqa: F401\n"
        "from . import pool as _tau_pool\n",
    )
    # Sibling stubs are imported absolutely by protoc; make them package-relative.
    source = re.sub(r"^import (\w+_pb2) as (\w+)$", r"from . import \1 as \2", source, flags=re.M)
    return HEADER + source


def generate_stubs() -> dict[str, str]:
    """Run protoc over proto/ and return {stub file name: rewritten source}."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_DIR}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *(str(PROTO_DIR / name) for name in PROTO_FILES),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_DIR}")
        return {path.name: _rewrite(path.read_text()) for path in sorted(Path(out).iterdir())}


def main() -> int:
    for name, source in generate_stubs().items():
        (STUB_DIR / name).write_text(source)
        print(f"wrote {STUB_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
