#!/usr/bin/env python3
"""Writes a MaxMind-format test database with mmdb-writer.

Usage: make_mmdb.py OUTPUT SPEC

SPEC is JSON: a list of {"network": "10.1.0.0/16", "data": {...}}, or an
object {"ip_version": 4 or 6, "networks": [...]}. The default is an IPv6
database holding IPv4 networks at ::/96 (ipv4_compatible), as MaxMind's
own databases do. JSON integers become the smallest unsigned type that
fits (int32 when negative), floats doubles, booleans booleans.

Needs `pip install mmdb-writer`.
"""

import json
import sys

try:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet
except ImportError as e:
    sys.exit(f"make_mmdb.py: {e}; run `pip install mmdb-writer`")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: make_mmdb.py OUTPUT SPEC")
    output, spec = sys.argv[1], json.loads(sys.argv[2])
    if isinstance(spec, list):
        spec = {"networks": spec}
    ip_version = spec.get("ip_version", 6)
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type="k8gb-test",
        languages=["en"],
        description="k8gb test database",
    )
    for entry in spec["networks"]:
        writer.insert_network(IPSet([entry["network"]]), entry["data"])
    writer.to_db_file(output)


if __name__ == "__main__":
    main()
