"""What the record checksum costs per task: CRC-32 of each stored record, on write and read.

    python bench/checksum.py

A task is written about three times (created, running, done) and read back by
views; each write computes the CRC-32 of the record's body, each read checks
it. This times encoding and decoding a typical record with and without the
checksum (the same code, `zlib.crc32` left out), in one process, and writes
`results/checksum.json`.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import timeit
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec

from taskservice.model import Progress, Task
from taskservice.storage.base import decode_record, encode_record

RESULTS = Path(__file__).resolve().parent / "results" / "checksum.json"


def typical(size: int) -> Task:
    """A finished task with props and a result of about `size` bytes in all."""
    blob = "x" * max(0, size // 2 - 40)
    return Task(
        id="01a24d6ce330e0d91a5a735",
        name="resizeImage",
        service="tasks",
        properties={"image": "uploads/a.png", "width": 640, "note": blob},
        hash="0" * 64,
        state="done",
        cause_type="upload",
        cause="u1",
        root_type="upload",
        root="u1",
        progress=Progress(current=1.0, total=1.0),
        result={"ok": True, "thumb": blob},
        created_at=1_765_000_000_000,
        started_at=1_765_000_000_010,
        done_at=1_765_000_000_050,
        version=3,
    )


def per_call(stmt: object, number: int) -> float:
    runs = timeit.repeat(stmt, number=number, repeat=7)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


def main() -> None:
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(Task)
    rows = []
    for size in (300, 2_000, 20_000):
        task = typical(size)
        body = encoder.encode(task)
        record = encode_record(task)
        number = 20_000 if size < 10_000 else 4_000
        row = {
            "record_bytes": len(record),
            "encode_plain_us": per_call(lambda t=task: b"\x01" + encoder.encode(t), number),
            "encode_checked_us": per_call(lambda t=task: encode_record(t), number),
            "decode_plain_us": per_call(lambda b=body: decoder.decode(b), number),
            "decode_checked_us": per_call(lambda r=record: decode_record(r), number),
            "crc32_us": per_call(lambda b=body: zlib.crc32(b), number),
        }
        rows.append(row)
    print("| record | encode | with CRC | decode | with CRC | CRC-32 alone |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['record_bytes']:,} B | {row['encode_plain_us']:.2f} µs "
            f"| {row['encode_checked_us']:.2f} µs | {row['decode_plain_us']:.2f} µs "
            f"| {row['decode_checked_us']:.2f} µs | {row['crc32_us']:.2f} µs |"
        )
    RESULTS.write_text(
        json.dumps(
            {"machine": platform.machine(), "python": platform.python_version(), "rows": rows},
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
