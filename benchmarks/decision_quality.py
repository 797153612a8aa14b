"""Decision quality of canary judges on a seeded simulation: false rollbacks, detection, time to rollback.

The same canary, simulated per second: canary and control each get 5 % of the traffic, the control's
error rate is 0.5 %, the canary's is that times the error ratio of the cell; latencies are log-normal
(median 100 ms, p99 about 320 ms) and observed into Prometheus' default buckets, the canary's scaled by
the cell's p99 shift. One 30-minute window, 300 runs per cell, one seed. Judges side by side:

* ``judge``   the project's sequential judge (``orchestrator.gates.judge``), a look every 10 s,
              alpha 1 %, tolerance 1.2x for errors and +10 % on p99 for latency. Its arithmetic is
              the vectorised core that ``judge_update`` calls; every cell also replays its first
              ``--check`` runs through ``judge_update``/``judge_finish`` one look at a time and stops
              if a single decision or decision time differs (``--exact`` drives every run that way);
* ``oracle``  an SPRT that knows the true effect (likelihood ratio of the true ratio against none,
              same looks, threshold 1/alpha): the practical floor on detection time; in identical
              cells it tests against a 2x regression;
* ``argo``    every 60 s, the canary's last-minute error ratio > 2x the base (p99 > 1.2x the
              control's p99 over the same minute), failureLimit 0;
* ``flagger`` the same check, rollback at the 5th failure;
* ``kayenta`` every 5 min, Mann-Whitney U on the last 5 minutes' 10 s error ratios (10 s p99s),
              canary vs control, one-sided p < 0.02.

Columns: rolled back (for an identical version: a false rollback; else: caught within the window),
median and p90 time to rollback over caught runs, the same with uncaught runs counted at the window's
end, promoted (early or at the end), and "not enough traffic" (only the judge says so; the others
promote whatever they did not fail).

    python benchmarks/decision_quality.py                # 300 runs per cell, about a minute
    python benchmarks/decision_quality.py --runs 50 --check 5
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.stats import mannwhitneyu, norm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.gates.judge import (
    OFFSETS,
    JudgeLook,
    JudgeState,
    Outcome,
    Side,
    center,
    counts_increment,
    decide_counts,
    judge_finish,
    judge_update,
    tail_bound,
)
from orchestrator.specs.checks import Check

WINDOW = 30 * 60
LOOK = 10
SHARE = 0.05
BASE_ERRORS = 0.005
ALPHA = 0.01
LE = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, np.inf])
MEDIAN, SIGMA = 0.1, 0.5
BASE_P99 = MEDIAN * math.exp(SIGMA * norm.ppf(0.99))
ERROR_TOLERANCE, LATENCY_TOLERANCE = 1.2, 1.1
T0 = datetime(2024, 1, 1, tzinfo=UTC)

ERRORS_CHECK = Check.model_validate({"name": "errors", "interval": "10s", "judge": {
    "errors": 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code=~"5.."})',
    "requests": 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})',
    "tolerance": f"{ERROR_TOLERANCE}x", "maxFalseRollback": ALPHA}})  # fmt: skip
LATENCY_CHECK = Check.model_validate({"name": "latency", "interval": "10s", "judge": {
    "latency": 'sum by (le, pod) (http_request_duration_seconds_bucket{app="{{app}}",{{track_selector}}})',
    "quantile": 0.99, "tolerance": f"+{(LATENCY_TOLERANCE - 1) * 100:g}%", "maxFalseRollback": ALPHA}})  # fmt: skip

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass
class Cell:
    rps: int
    kind: str  # errors | latency
    effect: float  # error ratio, or p99 factor

    @property
    def identical(self) -> bool:
        return self.effect == 1.0

    @property
    def label(self) -> str:
        return f"errors x{self.effect:g}" if self.kind == "errors" else f"p99 +{(self.effect - 1) * 100:.0f} %"


@dataclass
class Result:
    """Per run: decision time in seconds (inf: none) and how the run ended."""

    rollback_at: FloatArray
    promoted: NDArray[np.bool_]
    not_enough: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass
class Data:
    """Per-look counts: shape (runs, looks); buckets: (runs, looks, buckets) cumulative by le."""

    nc: IntArray
    ec: IntArray
    n0: IntArray
    e0: IntArray
    bc: IntArray | None = None
    b0: IntArray | None = None


def bucket_probabilities(scale: float) -> FloatArray:
    upper = norm.cdf((np.log(LE[:-1]) - math.log(MEDIAN * scale)) / SIGMA)
    cdf = np.append(upper, 1.0)
    return np.diff(np.insert(cdf, 0, 0.0))


def simulate(cell: Cell, runs: int, rng: np.random.Generator) -> Data:
    seconds = WINDOW
    lam = cell.rps * SHARE
    nc_s = rng.poisson(lam, (runs, seconds))
    n0_s = rng.poisson(lam, (runs, seconds))
    ratio = cell.effect if cell.kind == "errors" else 1.0
    ec_s = rng.binomial(nc_s, min(1.0, BASE_ERRORS * ratio))
    e0_s = rng.binomial(n0_s, BASE_ERRORS)
    looks = seconds // LOOK

    def per_look(x: IntArray) -> IntArray:
        return x.reshape(runs, looks, LOOK).sum(axis=2)

    data = Data(per_look(nc_s), per_look(ec_s), per_look(n0_s), per_look(e0_s))
    if cell.kind == "latency":
        scale = cell.effect
        pc, p0 = bucket_probabilities(scale), bucket_probabilities(1.0)
        bc = rng.multinomial(data.nc, pc)
        b0 = rng.multinomial(data.n0, p0)
        data.bc, data.b0 = np.cumsum(bc, axis=-1), np.cumsum(b0, axis=-1)
    return data


def control_history() -> list[tuple[float, float]]:
    cumulative = np.cumsum(bucket_probabilities(1.0)) * 1e6
    return [(float(le), float(c)) for le, c in zip(LE, cumulative, strict=True)]


def tail_events(data: Data, le: float) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    assert data.bc is not None and data.b0 is not None
    j = int(np.searchsorted(LE, le))
    return data.nc, data.bc[..., -1] - data.bc[..., j], data.n0, data.b0[..., -1] - data.b0[..., j]


def project_judge(cell: Cell, data: Data) -> Result:
    runs, looks = data.nc.shape
    if cell.kind == "errors":
        nc, ec, n0, e0 = data.nc, data.ec, data.n0, data.e0
        tolerance = ERROR_TOLERANCE
    else:
        le, tolerance = tail_bound(control_history(), 0.99, LATENCY_TOLERANCE)
        assert le is not None
        nc, ec, n0, e0 = tail_events(data, le)
    loglik = np.zeros((runs, OFFSETS.size))
    rollback = np.full(runs, np.inf)
    promoted = np.zeros(runs, dtype=bool)
    open_ = np.ones(runs, dtype=bool)
    boundary = center(tolerance)
    for i in range(looks):
        idx = np.flatnonzero(open_)
        if idx.size == 0:
            break
        loglik[idx] += counts_increment(nc[idx, i], ec[idx, i], n0[idx, i], e0[idx, i], boundary)
        d = decide_counts(loglik[idx], ALPHA, tolerance, sequence=False)
        failed, within = d.failed, d.successful
        rollback[idx[failed]] = (i + 1) * LOOK
        promoted[idx[within]] = True
        open_[idx[failed | within]] = False
    return Result(rollback, promoted, open_.copy())


def exact_judge(cell: Cell, data: Data, run: int) -> tuple[str, float]:
    """One run through judge_update/judge_finish, one look at a time: (outcome, seconds)."""
    check = ERRORS_CHECK if cell.kind == "errors" else LATENCY_CHECK
    history = control_history() if cell.kind == "latency" else []
    state, _ = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, control_history=history), alpha=ALPHA)
    les = [float(x) for x in LE]
    for i in range(data.nc.shape[1]):
        if cell.kind == "errors":
            canary = Side(requests=float(data.nc[run, i]), errors=float(data.ec[run, i]))
            control = Side(requests=float(data.n0[run, i]), errors=float(data.e0[run, i]))
        else:
            assert data.bc is not None and data.b0 is not None
            canary = Side(buckets=list(zip(les, map(float, data.bc[run, i]), strict=True)))
            control = Side(buckets=list(zip(les, map(float, data.b0[run, i]), strict=True)))
        look = JudgeLook(at=T0 + timedelta(seconds=(i + 1) * LOOK), canary=canary, control=control)
        state, verdict = judge_update(check, state, look, alpha=ALPHA)
        if verdict.outcome is not Outcome.RUNNING:
            return verdict.outcome.value, (i + 1) * LOOK
    return judge_finish(check, state, alpha=ALPHA).outcome.value, math.inf


def oracle_sprt(cell: Cell, data: Data) -> Result:
    if cell.kind == "errors":
        nc, ec, n0, e0 = data.nc, data.ec, data.n0, data.e0
        rho = cell.effect if not cell.identical else 2.0
    else:
        le, _ = tail_bound(control_history(), 0.99, LATENCY_TOLERANCE)
        assert le is not None
        nc, ec, n0, e0 = tail_events(data, le)
        p0 = 1 - norm.cdf((math.log(le) - math.log(MEDIAN)) / SIGMA)
        effect = cell.effect if not cell.identical else 1.5
        pc = 1 - norm.cdf((math.log(le) - math.log(MEDIAN * effect)) / SIGMA)
        rho = pc / p0
    q = nc / np.maximum(nc + n0, 1)
    p1 = q * rho / (q * rho + 1 - q)
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.where((nc > 0) & (n0 > 0), ec * np.log(p1 / q) + e0 * np.log((1 - p1) / (1 - q)), 0.0)
    cumulative = np.cumsum(np.nan_to_num(llr), axis=1)
    return _first_crossing(cumulative >= math.log(1 / ALPHA), LOOK)


def _first_crossing(fails: NDArray[np.bool_], every: int) -> Result:
    hit = fails.any(axis=1)
    first = np.where(hit, fails.argmax(axis=1) + 1, 0) * every
    rollback = np.where(hit, first.astype(float), np.inf)
    return Result(rollback, ~hit)


def window_metric(cell: Cell, data: Data, group: int) -> tuple[FloatArray, FloatArray]:
    """The canary's and control's metric per window of ``group`` looks: error ratio, or p99."""
    runs, looks = data.nc.shape
    windows = looks // group

    def sum_groups(x: IntArray) -> IntArray:
        return x[:, : windows * group].reshape(runs, windows, group, *x.shape[2:]).sum(axis=2)

    if cell.kind == "errors":
        with np.errstate(invalid="ignore", divide="ignore"):
            c = sum_groups(data.ec) / sum_groups(data.nc)
            k = sum_groups(data.e0) / sum_groups(data.n0)
        return np.nan_to_num(c), np.nan_to_num(k)
    assert data.bc is not None and data.b0 is not None
    return _p99(sum_groups(data.bc)), _p99(sum_groups(data.b0))


def _p99(cumulative: IntArray) -> FloatArray:
    """histogram_quantile(0.99) over the last axis (linear within a bucket; the +Inf bucket gives its lower bound)."""
    total = cumulative[..., -1:]
    rank = 0.99 * total
    j = np.minimum((cumulative < rank).sum(axis=-1), LE.size - 1)
    lower_le = np.where(j > 0, LE[np.maximum(j - 1, 0)], 0.0)
    upper_le = LE[j]
    below = np.where(j > 0, np.take_along_axis(cumulative, np.maximum(j - 1, 0)[..., None], -1)[..., 0], 0)
    at = np.take_along_axis(cumulative, j[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((rank[..., 0] - below) / np.maximum(at - below, 1), 0, 1)
    p99 = np.where(np.isinf(upper_le), lower_le, lower_le + (upper_le - lower_le) * frac)
    return np.where(total[..., 0] > 0, p99, np.nan)


def threshold_judge(cell: Cell, data: Data, failures: int) -> Result:
    canary, control = window_metric(cell, data, 60 // LOOK)
    if cell.kind == "errors":
        fails = np.nan_to_num(canary, nan=0.0) > 2 * BASE_ERRORS
    else:
        # Relative to the control's p99 in the same minute: bucket interpolation biases both alike.
        fails = np.nan_to_num(canary, nan=0.0) > 1.2 * np.nan_to_num(control, nan=np.inf)
    count = np.cumsum(fails, axis=1)
    return _first_crossing(count >= failures, 60)


def kayenta_judge(cell: Cell, data: Data) -> Result:
    canary, control = window_metric(cell, data, 1)
    runs, looks = canary.shape
    every = 300 // LOOK
    fails = np.zeros((runs, looks // every), dtype=bool)
    for w in range(looks // every):
        c = np.nan_to_num(canary[:, w * every : (w + 1) * every])
        k = np.nan_to_num(control[:, w * every : (w + 1) * every])
        with np.errstate(invalid="ignore", divide="ignore"):
            p = mannwhitneyu(c, k, alternative="greater", axis=1, method="asymptotic").pvalue
        fails[:, w] = np.nan_to_num(p, nan=1.0) < 0.02
    return _first_crossing(fails, 300)


def summarise(cell: Cell, result: Result) -> dict[str, str]:
    runs = result.rollback_at.size
    caught = np.isfinite(result.rollback_at)
    times = result.rollback_at[caught]
    censored = np.where(caught, result.rollback_at, WINDOW)

    def minutes(x: FloatArray, q: float) -> str:
        return "-" if x.size == 0 else f"{np.quantile(x, q) / 60:.1f}"

    return {
        "rolled back": f"{caught.mean() * 100:.1f} %",
        "median/p90 (caught)": f"{minutes(times, 0.5)} / {minutes(times, 0.9)}",
        "median/p90 (all)": f"{minutes(censored, 0.5)} / {minutes(censored, 0.9)}",
        "promoted": f"{result.promoted.mean() * 100:.1f} %",
        "not enough traffic": f"{result.not_enough.mean() * 100:.1f} %" if result.not_enough.size else "n/a",
        "runs": str(runs),
    }


def cells() -> list[Cell]:
    out = []
    for rps in (100, 1000):
        out += [Cell(rps, "errors", r) for r in (1.0, 1.5, 2.0, 5.0)]
        out += [Cell(rps, "latency", s) for s in (1.0, 1.1, 1.5)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--check", type=int, default=20, help="runs per cell replayed through judge_update")
    parser.add_argument("--exact", action="store_true", help="drive every run through judge_update")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    le, tail_tol = tail_bound(control_history(), 0.99, LATENCY_TOLERANCE)
    print(f"settings: canary = control = {SHARE * 100:g} % of traffic; base error rate {BASE_ERRORS * 100:g} %; "
          f"window {WINDOW // 60} min; {args.runs} runs per cell; seed {args.seed}; judge looks every {LOOK} s, "
          f"alpha {ALPHA * 100:g} %, tolerance {ERROR_TOLERANCE}x errors, p99 +{(LATENCY_TOLERANCE - 1) * 100:g} % "
          f"(slow = above {le:g} s, the control's p99 bucket; tail-ratio tolerance {tail_tol:.2f}); "
          f"latency log-normal, median {MEDIAN * 1000:g} ms, p99 {BASE_P99 * 1000:.0f} ms")  # fmt: skip
    header = ["judge", "rps", "cell", "rolled back", "median/p90 (caught)", "median/p90 (all)", "promoted",
              "not enough traffic"]  # fmt: skip
    rows: list[list[str]] = []
    mismatches = 0
    for n, cell in enumerate(cells()):
        rng = np.random.default_rng([args.seed, n])
        data = simulate(cell, args.runs, rng)
        judged = project_judge(cell, data)
        replay = range(args.runs) if args.exact else range(min(args.check, args.runs))
        for run in replay:
            outcome, at = exact_judge(cell, data, run)
            want = ("failed" if np.isfinite(judged.rollback_at[run]) else
                    "successful" if judged.promoted[run] else "not enough traffic")  # fmt: skip
            if outcome != want or (outcome == "failed" and at != judged.rollback_at[run]):
                mismatches += 1
                print(f"MISMATCH {cell.label} rps {cell.rps} run {run}: judge_update {outcome} at {at}, "
                      f"vectorised {want}", file=sys.stderr)  # fmt: skip
        judges = {
            "judge": judged,
            "oracle SPRT": oracle_sprt(cell, data),
            "argo-like": threshold_judge(cell, data, 1),
            "flagger-like": threshold_judge(cell, data, 5),
            "kayenta-like": kayenta_judge(cell, data),
        }
        for name, result in judges.items():
            s = summarise(cell, result)
            rows.append([name, str(cell.rps), cell.label, s["rolled back"], s["median/p90 (caught)"],
                         s["median/p90 (all)"], s["promoted"], s["not enough traffic"]])  # fmt: skip
    _print(header, rows, args.markdown)
    checked = args.runs if args.exact else min(args.check, args.runs)
    print(f"\n{checked} runs per cell replayed through judge_update/judge_finish: {mismatches} mismatches; "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    return 1 if mismatches else 0


def _print(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    raise SystemExit(main())
