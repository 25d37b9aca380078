#!/usr/bin/env python
"""Old code against new, on this machine, in the same hour: benchmarks/run.py against a baseline
commit and against the current tree, alternating, then one table of both with their ratio.

    .venv/bin/python benchmarks/compare.py [--baseline 87808ce] [--current REV] [--rounds 2]
                                           [--only a,b,c,d] [--n 5000] [--broker orm|redis] [--email smtp|locmem]

The baseline is checked out with `git worktree add --detach` in a temporary directory (removed at
the end; --keep leaves it). The current tree is this checkout's working tree, uncommitted changes
included (--current REV: a worktree of that commit instead). Each run is this directory's run.py
(the same instruments for both) with --tree pointing at the measured tree: the bench process and
its qclusters run with cwd and PYTHONPATH = that tree, and run.py stops unless both import
crm_automation from it (the virtualenv's editable install points at this checkout). Each tree
has its own database (crm_cmp_baseline, crm_cmp_current), recreated by every run.

Round 1 runs the baseline first, round 2 the current tree first, and so on, so that a machine
growing busier or quieter favours neither. How each figure is measured: benchmarks/README.md,
"Old code against new".
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DB_BASE = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_bench").rsplit("/", 1)[0]

# (path in run.py's JSON, label, format); "hops" rows are added from what the runs measured.
FIGURES = [
    ("a.1 workflow vs off", "(a) save, 1 workflow ÷ automation off", "{:.2f}x"),
    ("a.50 workflows vs off", "(a) save, 50 workflows ÷ off", "{:.2f}x"),
    ("a.50 vs 1 workflow", "(a) save, 50 workflows ÷ 1 (flat = 1.00)", "{:.2f}x"),
    ("a.plain save, on vs off", "(a) plain Deal.save(), on ÷ off", "{:.2f}x"),
    ("b.backlog runs/s", "(b) backlog runs/s", "{:.0f}"),
    ("b.per run.cpu_ms", "(b) worker CPU ms / run", "{:.2f}"),
    ("b.per run.commits", "(b) commits / run", "{:.2f}"),
    ("b.per run.rows", "(b) rows written / run", "{:.1f}"),
    ("b.per run.inserted", "(b)   INSERT / run", "{:.1f}"),
    ("b.per run.updated", "(b)   UPDATE / run", "{:.1f}"),
    ("b.per run.deleted", "(b)   DELETE / run", "{:.1f}"),
    ("b.save path.commits", "(b) save path: commits / change", "{:.2f}"),
    ("b.save path.rows", "(b) save path: rows written / change", "{:.1f}"),
    ("b.live runs/s", "(b) live (saves while it runs) runs/s", "{:.0f}"),
    ("c.all done s", "(c) leads converted → all runs done, s", "{:.2f}"),
    ("c.per run.cpu_ms", "(c) worker CPU ms / lead", "{:.2f}"),
    ("c.per run.commits", "(c) commits / lead (conversion included)", "{:.2f}"),
    ("c.per run.rows", "(c) rows written / lead (conversion incl.)", "{:.1f}"),
    ("d.p50 ms", "(d) trigger → run completed p50 ms", "{:.1f}"),
    ("d.p99 ms", "(d) trigger → run completed p99 ms", "{:.1f}"),
    ("d.seen p50 ms", "(d) the same as the bench saw it, p50 ms", "{:.1f}"),
    ("d.seen p99 ms", "(d) the same as the bench saw it, p99 ms", "{:.1f}"),
]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def worktree(rev: str, path: Path) -> Path:
    git("worktree", "add", "--detach", "--quiet", str(path), rev)
    return path


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run_once(label: str, tree: Path, rnd: int, args: argparse.Namespace, out: Path) -> dict | None:
    """One run.py against `tree`, its output shown as it goes and kept in out/<label>-<round>.log."""
    result = out / f"{label}-{rnd}.json"
    cmd = [sys.executable, str(HERE / "run.py"), "--tree", str(tree), "--only", args.only, "--n", str(args.n),
           "--latency-samples", str(args.latency_samples),
           "--workers", str(args.workers), "--broker", args.broker, "--email", args.email, "--json", str(result)]
    env = {**os.environ, "BENCH_DATABASE_URL": f"{DB_BASE}/crm_cmp_{label}", "PYTHONPATH": str(tree)}
    print(f"\n=== {label}, round {rnd} ({tree}); 1-minute load {load()} ===", flush=True)
    started = time.monotonic()
    with (out / f"{label}-{rnd}.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None  # (a pipe: stdout=PIPE)
        for line in proc.stdout:
            print(f"[{label} {rnd}] {line}", end="", flush=True)
            log.write(line)
        proc.wait()
    if proc.returncode != 0 or not result.exists():
        print(f"=== {label}, round {rnd}: run.py exited with {proc.returncode} ===", flush=True)
        return None
    figures = json.loads(result.read_text())
    for key in ("bench_imports", "cluster_imports"):
        where = figures.get(key)
        if where is not None and not Path(where).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"{label}: {key} {where} is not under {tree}")
    figures["minutes"] = (time.monotonic() - started) / 60
    return figures


def value(figures: dict, path: str) -> float | None:
    node = figures
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, int | float) else None


def cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    text = fmt.format(statistics.median(values))
    return text if len(values) == 1 else f"{text} ({', '.join(fmt.format(v) for v in values)})"


def table(runs: dict[str, list[dict]], names: dict[str, str]) -> str:
    hops = []
    for figures in runs["baseline"] + runs["current"]:
        hops += [h for h in figures.get("d", {}).get("hops", {}) if h not in hops]
    rows = FIGURES + [(f"d.hops.{h}", f"(d)   {h}, median ms", "{:.1f}") for h in hops]
    lines = [("figure", names["baseline"], names["current"], "current ÷ baseline")]
    for path, label, fmt in rows:
        base = [v for f in runs["baseline"] if (v := value(f, path)) is not None]
        cur = [v for f in runs["current"] if (v := value(f, path)) is not None]
        if not base and not cur:
            continue
        ratio = (f"{statistics.median(cur) / statistics.median(base):.2f}"
                 if base and cur and statistics.median(base) else "-")
        lines.append((label, cell(base, fmt), cell(cur, fmt), ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    text = ["| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="87808ce", help="the old code: a commit (default 87808ce)")
    parser.add_argument("--current", help="the new code: a commit (default: this working tree, as it is)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="a,b,c,d")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=60,
                        help="(d): changes one at a time (a run of the same code against itself differed by "
                             "up to 10 %% in p50 with 60)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--broker", choices=["orm", "redis"], default="orm")
    parser.add_argument("--email", choices=["smtp", "locmem"], default="smtp")
    parser.add_argument("--keep", action="store_true", help="leave the worktrees and logs")
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="crm-compare-"))
    base_sha = git("rev-parse", "--short", f"{args.baseline}^{{commit}}")
    trees = {"baseline": worktree(base_sha, out / "baseline")}
    names = {"baseline": f"baseline {base_sha}"}
    try:
        if args.current:
            cur_sha = git("rev-parse", "--short", f"{args.current}^{{commit}}")
            trees["current"] = worktree(cur_sha, out / "current")
            names["current"] = f"current {cur_sha}"
        else:
            dirty = git("status", "--porcelain", "--untracked-files=no", "--", "crm_automation", "config")
            trees["current"] = REPO
            names["current"] = f"current {git('rev-parse', '--short', 'HEAD')}" + (" + work tree" if dirty else "")
        print(f"{names['baseline']}: {git('log', '-1', '--format=%s', base_sha)[:100]}")
        print(f"{names['current']}: {trees['current']}; rounds {args.rounds}, --only {args.only}, n={args.n}, "
              f"{args.broker} broker, email {args.email}, Q_WORKERS={args.workers}; logs in {out}")
        runs: dict[str, list[dict]] = {"baseline": [], "current": []}
        loads = []
        for rnd in range(1, args.rounds + 1):
            order = ["baseline", "current"] if rnd % 2 else ["current", "baseline"]
            for label in order:
                loads.append(f"{label} {rnd}: {load()}")
                figures = run_once(label, trees[label], rnd, args, out)
                if figures is not None:
                    runs[label].append(figures)
    finally:
        for label in ("baseline", "current"):
            tree = trees.get(label)
            if tree is not None and tree != REPO and not args.keep:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print(f"\n{names['baseline']} against {names['current']}, {args.rounds} round(s) each, alternating; "
          f"n={args.n}, {args.broker} broker, email {'to a local SMTP server' if args.email == 'smtp' else 'locmem'}, "
          f"Q_WORKERS={args.workers}, {os.cpu_count()} cores")
    print(f"1-minute load at each start: {'; '.join(loads)}")
    for label in ("baseline", "current"):
        for figures in runs[label]:
            print(f"{label}: bench imported {figures.get('bench_imports')}, qclusters imported "
                  f"{figures.get('cluster_imports')} ({figures['minutes']:.1f} min)")
    print("\nmedian of the rounds (each round's value in parentheses)\n")
    print(table(runs, names))
    return 0 if len(runs["baseline"]) == len(runs["current"]) == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
