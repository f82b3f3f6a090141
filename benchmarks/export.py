"""Export benchmark: the corpus to training formats, against a plain clickhouse-connect streaming read.

    python benchmarks/export.py [--trajectories 1000000] [--turns 10] [--batch 500] [--chunk 100000] [--dir DIR]

1. Load: a fresh chDB directory gets the project's migrations, then the dashboard benchmark's data
   (``benchmarks/dashboard.py``: ``INSERT ... SELECT ... FROM numbers``, the sink's table layout, 2% of
   trajectories re-scored into a second version), with migration 0004's ``messages.content`` filled with
   real content records as JSON (text, tool call, tool response: what the sink stores), so the corpus reader
   has what it needs. 2 messages per turn.
2. Each measured phase runs in its own fresh process (chDB takes one process per directory, and a fresh
   process gives each phase its own RSS high-water mark), one after another on the same directory:
   - ``baseline``: a plain clickhouse-connect read of the same rows in the same pages: the latest version of
     each trajectory paged by (ended_at, trajectory_id) with a keyset, and each page's messages streamed by
     ``query_row_block_stream`` (bounded by the page's time window and ids, as the reader bounds them),
     grouped by trajectory and written as one JSON line each (the raw content records), to disk.
   - ``openai-sft`` and ``trl-sft``: ``trajstream.corpus.export.run.export``, the
     command's own code (reader, format, atomic writer, manifest), until the manifest is on disk.
   Rows/s is trajectories read per second (both read every selected trajectory; the formats then skip some).
   Peak memory is the phase process's RSS high-water mark (``resource.getrusage``). tracemalloc is not used:
   it slows Python allocation several-fold, which would distort the rates it sits beside.
3. ``RESULT export_rows_<format> ratio=<ours / baseline rows per second> target=0.5`` per format, and
   ``RESULT export_rows`` for the slower of the two.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the dashboard benchmark's loader, beside this file

from dashboard import Data, Loader, log

from trajstream.consumers.clickhouse_store import connect, migrate, stored_bytes
from trajstream.settings import Settings

FORMATS = ("openai-sft", "trl-sft")
TARGET = 0.5

# migration 0004's content column: the content record as JSON, from the columns the dashboard loader derives
CONTENT = (
    "multiIf(kind = 'text', concat('{\"text\":', toJSONString(text), '}'), "
    "kind = 'tool_call', concat('{\"name\":', toJSONString(tool_name), ',\"call_id\":', toJSONString(call_id), "
    "',\"arguments\":', toJSONString(substring(text, length(tool_name) + 2)), '}'), "
    "concat('{\"name\":', toJSONString(tool_name), ',\"call_id\":', toJSONString(call_id), ',\"status\":', "
    "toJSONString(JSONExtractString(text, 'status')), ',\"result\":', toJSONString(text), '}')) AS content"
)


class ContentLoader(Loader):
    """The dashboard's loader, with each message's content record (migration 0004) beside its text."""

    def insert(self, table: str, columns: str, select: str, source: str, *, where: str = "") -> None:
        if table == "messages":
            columns, select = f"{columns}, content", f"{select}, {CONTENT}"
        super().insert(table, columns, select, source, where=where)


def settings_for(directory: Path) -> Settings:
    return Settings(home=directory / "home", clickhouse_dsn=f"chdb://{directory / 'ch'}")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def load(directory: Path, trajectories: int, turns: int, chunk: int) -> dict[str, Any]:
    settings = settings_for(directory)
    client = connect(settings)
    migrate(client, settings)
    loader = ContentLoader(client, settings.clickhouse_database, Data(trajectories, turns, int(time.time() * 1000)),
                           chunk)  # fmt: skip
    started = time.perf_counter()
    loader.load()
    sizes = stored_bytes(client, settings.clickhouse_database)
    tables = {t: sizes[t] for t in ("trajectories", "turns", "messages", "tool_calls") if t in sizes}
    return {"seconds": time.perf_counter() - started, "tables": tables}


def baseline(directory: Path, batch: int) -> dict[str, Any]:
    settings = settings_for(directory)
    client = connect(settings)
    db = settings.clickhouse_database
    out = directory / "baseline.jsonl"
    started = time.perf_counter()
    n = 0
    lo, hi, total = client.query(f"SELECT min(toUnixTimestamp64Milli(ended_at)), max(toUnixTimestamp64Milli("
                                 f"ended_at)), count() FROM {db}.trajectories").result_rows[0]  # fmt: skip
    width = max(1, (hi - lo + 1) * 4 * batch // total)  # time windows of about four pages, as the reader's
    after: tuple[int, str] = (lo - 1, "")
    end = lo + width
    with out.open("w", encoding="utf-8") as sink:
        while after[0] <= hi:
            heads = client.query(
                f"SELECT toUnixTimestamp64Milli(ended_at) AS e, trajectory_id, reward, system_message, agent_id, "
                f"toUnixTimestamp64Milli(started_at), toUnixTimestamp64Milli(scored_at) FROM {db}.trajectories "
                "WHERE ended_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC') AND (e, trajectory_id) > "
                "({a_e:Int64}, {a_t:String}) ORDER BY e, trajectory_id, version DESC LIMIT 1 BY trajectory_id "
                "LIMIT {n:UInt32}",
                parameters={"a_e": after[0], "a_t": after[1], "n": batch, "end": end},
            ).result_rows
            if len(heads) < batch:  # this window is read to its end
                if end > hi:
                    after = (hi + 1, "")
                end += width
            if not heads:
                continue
            after = max(after, (int(heads[-1][0]), str(heads[-1][1])))
            ids = [h[1] for h in heads]
            window = {"ids": ids, "agents": sorted({h[4] for h in heads}), "lo": min(h[5] for h in heads) - 3_600_000,
                      "hi": max(h[6] for h in heads) + 3_600_000}  # fmt: skip
            messages: dict[str, list[dict[str, Any]]] = {tid: [] for tid in ids}
            with client.query_row_block_stream(
                f"SELECT trajectory_id, turn_index, seq, role, content FROM {db}.messages WHERE agent_id IN "
                "{agents:Array(String)} AND timestamp >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND timestamp "
                "<= fromUnixTimestamp64Milli({hi:Int64}, 'UTC') AND trajectory_id IN {ids:Array(String)} "
                "ORDER BY trajectory_id, turn_index, seq",
                parameters=window,
            ) as stream:
                for block in stream:
                    for tid, _, _, role, content in block:
                        messages[tid].append({"role": role, "content": content})
            for _, tid, reward, system, *_ in heads:
                sink.write(json.dumps({"trajectory_id": tid, "reward": reward, "system": system,
                                       "messages": messages[tid]}, separators=(",", ":")))  # fmt: skip
                sink.write("\n")
                n += 1
        sink.flush()
    seconds = time.perf_counter() - started
    return {"trajectories": n, "seconds": seconds, "rows_per_s": n / seconds, "peak_mib": peak_mib(),
            "bytes": out.stat().st_size}  # fmt: skip


def ours(directory: Path, fmt: str, batch: int) -> dict[str, Any]:
    from trajstream.corpus.export.config import ExportSettings
    from trajstream.corpus.export.run import export
    from trajstream.corpus.read import CorpusFilter

    settings = ExportSettings.extend(settings_for(directory))
    client = connect(settings)
    out = directory / f"out-{fmt}"
    started = time.perf_counter()
    manifest = export(settings, fmt, out, CorpusFilter(), batch, client=client)
    seconds = time.perf_counter() - started
    read = manifest["counts"]["read"]
    return {"trajectories": read, "exported": manifest["counts"]["exported"], "skipped": manifest["counts"]["skipped"],
            "seconds": seconds, "rows_per_s": read / seconds, "peak_mib": peak_mib(),
            "bytes": sum(f["bytes"] for f in manifest["files"])}  # fmt: skip


def phase(directory: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One phase in a fresh process: its own chDB session and its own RSS high-water mark."""
    command = [sys.executable, __file__, "--phase", name, "--dir", str(directory), "--trajectories",
               str(args.trajectories), "--turns", str(args.turns), "--batch", str(args.batch), "--chunk",
               str(args.chunk)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=1_000_000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500, help="trajectories per page (the export's --batch)")
    parser.add_argument("--chunk", type=int, default=100_000, help="trajectories per INSERT while loading")
    parser.add_argument("--dir", type=Path, help="a new or empty directory (default: a new one in /tmp, removed)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase and print its JSON
    args = parser.parse_args()
    if args.phase:
        d = args.dir
        if args.phase == "load":
            result = load(d, args.trajectories, args.turns, args.chunk)
        else:
            result = baseline(d, args.batch) if args.phase == "baseline" else ours(d, args.phase, args.batch)
        print(json.dumps(result))
        return
    if args.dir and args.dir.exists() and any(args.dir.iterdir()):
        parser.error(f"{args.dir} is not empty: the benchmark loads a fresh directory")
    directory = (args.dir or Path(tempfile.mkdtemp(prefix="bench-export-", dir="/tmp"))).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        log(f"loading {args.trajectories:,} trajectories of {args.turns} turns into {directory}")
        loaded = phase(directory, "load", args)
        print(f"loaded {args.trajectories:,} trajectories x {args.turns} turns in {loaded['seconds']:.1f} s: "
              + ", ".join(f"{t} {rows:,} rows" for t, (rows, _) in loaded["tables"].items()))  # fmt: skip
        log("baseline: clickhouse-connect streaming read")
        base = phase(directory, "baseline", args)
        print(f"{'reader':<22} {'trajectories':>12} {'seconds':>9} {'rows/s':>10} {'peak RSS MiB':>13} {'MiB out':>9}")
        print(f"{'baseline (stream)':<22} {base['trajectories']:>12,} {base['seconds']:>9.1f} "
              f"{base['rows_per_s']:>10,.0f} {base['peak_mib']:>13,.0f} {base['bytes'] / 2**20:>9,.1f}")  # fmt: skip
        results: list[str] = []
        ratios = []
        for fmt in FORMATS:
            log(f"export {fmt}")
            got = phase(directory, fmt, args)
            print(f"{fmt:<22} {got['trajectories']:>12,} {got['seconds']:>9.1f} {got['rows_per_s']:>10,.0f} "
                  f"{got['peak_mib']:>13,.0f} {got['bytes'] / 2**20:>9,.1f}   exported {got['exported']:,} rows, "
                  f"skipped {got['skipped']}")  # fmt: skip
            if got["trajectories"] != base["trajectories"]:
                raise SystemExit(f"{fmt} read {got['trajectories']} trajectories, the baseline {base['trajectories']}")
            ratio = got["rows_per_s"] / base["rows_per_s"]
            ratios.append(ratio)
            results.append(f"RESULT export_rows_{fmt.replace('-', '_')} ratio={ratio:.3f} target={TARGET}")
        results.append(f"RESULT export_rows ratio={min(ratios):.3f} target={TARGET}")  # the slower format
        for line in results:
            print(line)
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
