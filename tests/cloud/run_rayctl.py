"""`python tests/cloud/run_rayctl.py ARGS...` = `python -m rayctl ARGS...`, with a stub
`rayctl.workloads` installed first when this checkout has none (see conftest)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloudkit import stub_workloads  # noqa: E402

stub_workloads()
from rayctl.cli.main import main  # noqa: E402

main(sys.argv[1:])
