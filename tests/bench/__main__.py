"""make bench: every benchmark, each next to a ceiling measured in the same run."""

import asyncio
import sys
import tempfile
from pathlib import Path

from shared.service import tune_garbage_collector
from tests.bench import consent, history, identity, ingest, pipeline, segments, timeline


async def main() -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="touchline-bench-"))
    only = set(sys.argv[1:])  # `python -m tests.bench timeline` runs one benchmark
    for name, bench in (
        ("ingest", ingest),
        ("timeline", timeline),
        ("segments", segments),
        ("history", history),
        ("consent", consent),
        ("identity", identity),
        ("pipeline", pipeline),
    ):
        if not only or name in only:
            print("\n".join(await bench.run(log_dir)), flush=True)
    print(f"(service logs: {log_dir})", file=sys.stderr)


if __name__ == "__main__":
    # The load generator holds every round's encoded requests (470,000 objects for the pipeline's
    # workloads): under CPython's defaults a full collection walked them all, 0.3 s each, mid-round,
    # pausing the senders and the latency probes. Tuned as the services are, building them took 14 s, not
    # 24, with one full collection instead of 27.
    tune_garbage_collector()
    asyncio.run(main())
