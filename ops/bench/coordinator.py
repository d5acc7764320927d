"""The coordinator alone, in its own process: plan one run (stream the billing into the ledger).

    python -m ops.bench.coordinator ENV_JSON RUN_ID

ENV_JSON holds the REBILL_* settings. Prints one JSON line: seconds, peak RSS (MiB), rows planned.
No worker consumes the run's queue, so at most the dispatch window of chunks is queued and every
bit of memory measured is the coordinator's.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    env_file, run_id = sys.argv[1], sys.argv[2]
    os.environ.update(json.loads(Path(env_file).read_text()))
    from orchestrator.bootstrap import Container
    from orchestrator.config import load_settings
    from orchestrator.services import planning

    container = Container(load_settings())
    try:
        ctx = container.context
        baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        planning.plan_run(ctx, run_id)
        seconds = time.perf_counter() - started
        run = ctx.ledger.get_run(run_id)
        assert run is not None
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "rss_before_planning_mib": baseline_mib,
                    "rows": run.invoice_count,
                    "state": run.state.value,
                }
            )
        )
    finally:
        container.close()


if __name__ == "__main__":
    main()
