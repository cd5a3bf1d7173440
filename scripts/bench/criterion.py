#!/usr/bin/env python3
"""Prints each criterion benchmark under CRITERION_HOME (argv[1]) as `PREFIX<group>/<function>
<median ns>`, and, for a benchmark measured in bytes, `PREFIXbytes.<group>/<function> <bytes>`;
spaces in names become underscores. Used by scripts/bench.sh."""

import json
import pathlib
import sys

home = pathlib.Path(sys.argv[1])
prefix = sys.argv[2] if len(sys.argv) > 2 else ""
for benchmark in sorted(home.glob("**/new/benchmark.json")):
    meta = json.loads(benchmark.read_text())
    estimates = json.loads((benchmark.parent / "estimates.json").read_text())
    name = f"{meta['group_id']}/{meta['function_id']}".replace(" ", "_")
    print(f"{prefix}criterion.{name} {estimates['median']['point_estimate']:.1f}")
    throughput = meta.get("throughput") or {}
    if "Bytes" in throughput:
        print(f"{prefix}bytes.{name} {throughput['Bytes']}")
