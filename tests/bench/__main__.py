"""make bench: every benchmark, each next to a ceiling measured in the same run."""

import asyncio
import sys
import tempfile
from pathlib import Path

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
    asyncio.run(main())
