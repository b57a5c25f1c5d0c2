"""``openlfr bench equitability``: the equitability report's command (registered on the ``bench`` group)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from openlfr.bench.equitability_design import ALPHA, GRID_STEP, PERMUTATIONS, PermutationDesign
from openlfr.cli.common import JsonOption, WorkersOption, get_settings


def register(bench: typer.Typer) -> None:
    bench.command("equitability")(bench_equitability)


def bench_equitability(
    data: Annotated[Path, typer.Option(help="Folder the labels' image paths are relative to.")],
    labels: Annotated[Path, typer.Option(help="CSV: image, identity and group columns (sex, age band, ...).")],
    as_json: JsonOption = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save the DET curves per group (PNG).")] = None,
    threshold: Annotated[
        list[float] | None,
        typer.Option(
            "--threshold",
            help="Operating match-score threshold (repeatable); default: the one a deployment of this watchlist "
            "would run at (OPENLFR_SCAN_TARGET_FPIR).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the permutation test.")] = 0,
    permutations: Annotated[int, typer.Option(min=99, help="Permutations of the test.")] = PERMUTATIONS,
    alpha: Annotated[float, typer.Option(min=0.001, max=0.5, help="Family-wise error rate of the test.")] = ALPHA,
    grid_step: Annotated[float, typer.Option(min=0.001, max=0.1, help="Spacing of the tested thresholds.")] = GRID_STEP,
    min_identities: Annotated[
        int, typer.Option(min=2, help="Smallest group: enrolled and non-enrolled identities each.")
    ] = 10,
    workers: WorkersOption = 2,
) -> None:
    """Per group: FNIR and FPIR with intervals at the operating threshold(s), DET curves, and where groups differ."""
    from openlfr.bench.equitability import run_equitability

    result = run_equitability(
        get_settings(),
        data,
        labels,
        thresholds=threshold or None,
        design=PermutationDesign(grid_step=grid_step, permutations=permutations, alpha=alpha, seed=seed),
        min_identities=min_identities,
        workers=workers,
        quiet=as_json,
        plot=plot,
    )
    if as_json:
        typer.echo(json.dumps(result))
    else:
        print_report(result)


def _rate(figures: dict[str, Any]) -> str:
    low, high = figures["ci"]
    return f"{figures['rate']:.2%} [{low:.2%}, {high:.2%}] ({figures['errors']}/{figures['probes']})"


def _difference(name: str, test: dict[str, Any], alpha: float) -> str:
    low, high, count = test["grid"]
    if not test["significant"]:
        return f"{name}: no significant difference between groups at any threshold {low:.2f}-{high:.2f}"
    ranges = ", ".join(f"{a:.2f}" if a == b else f"{a:.2f}-{b:.2f}" for a, b in test["significant_ranges"])
    above = test["no_difference_at_or_above"]
    tail = f"; none at {above:.2f} and above" if above is not None else ""
    family = f"family-wise {alpha:.0%} over {count} thresholds"
    return f"{name}: groups differ significantly at thresholds {ranges}{tail} ({family})"


def print_report(result: dict[str, Any]) -> None:
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=140)  # piped or captured: keep each table row on one line
    console.print(
        f"{result['model_id']}: {result['n_enrolled']} enrolled, {result['n_mated']} mated and "
        f"{result['n_nonmated']} non-mated probes ({result['n_identities']} identities)",
        highlight=False,
    )
    for operating in result["operating_thresholds"]:
        console.print(f"threshold {operating['threshold']}: {operating['how']}", highlight=False)
    console.print(f"intervals: {result['interval']}", highlight=False)
    console.print(f"test: {result['test']}", highlight=False)
    for column, report in result["columns"].items():
        table = Table(title=f"{column}")
        for heading in ("group", "people (enrolled / not)", "threshold", "FNIR [95% CI]", "FPIR [95% CI]"):
            table.add_column(heading)
        for name, figures in report["groups"].items():
            for at in figures["at_threshold"]:
                table.add_row(
                    name,
                    f"{figures['enrolled_identities']} / {figures['nonmated_identities']}",
                    f"{at['threshold']:.4f}",
                    _rate(at["fnir"]),
                    _rate(at["fpir"]),
                )
        console.print(table)
        console.print(_difference("FNIR", report["fnir_difference"], result["alpha"]), highlight=False)
        console.print(_difference("FPIR", report["fpir_difference"], result["alpha"]), highlight=False)
    if "plot" in result:
        console.print(f"DET curves: {result['plot']}", highlight=False)
