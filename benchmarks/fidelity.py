"""Does each method sample the posterior?  `dmap fidelity` on the exact mixture prior for the
five paper tasks, every method at 100 network evaluations and the guided ones also at 1000.

    python benchmarks/fidelity.py [--tasks inpaint-box,...] [--measurements 4] [--samples 32]
    python benchmarks/fidelity.py --report        # the table of what exists
    python benchmarks/fidelity.py --particles      # TDS and MCGdiff on sr4 at 1000 NFE, 4 / 16 / 64 particles

Each task runs into ``benchmarks/results/fidelity/<task>-<nfe>/`` (resumable; a method that
cannot take the task, DDRM without an SVD, is left out), then ``table.md`` collects SW2 /
its floor, the variance ratio, the 90 % coverage and the PSNR of the sample mean.
"""

from __future__ import annotations

import argparse
import json

from common import PAPER_TASKS, RESULTS, dmap_cli

OUT = RESULTS / "fidelity"
RUNS = {100: "dps,dsg,dmap,ddrm,diffpir,pigdm,daps,reddiff", 1000: "dps,dsg,dmap,tds,mcgdiff"}
PARTICLES = (4, 16, 64)  # the SMC samplers at 1000 evaluations on sr4: particles x steps = 1000


def suited(task: str, methods: str) -> str:
    import dmap
    from dmap.api import unsuited

    t = dmap.make_task(task, (1, 32, 32))
    return ",".join(m for m in methods.split(",") if unsuited(m, t) is None)


def table(tasks: list[str]) -> str:
    lines = [
        "| task | method | NFE | SW2 / floor | variance ratio | coverage 90 % | PSNR of the mean | PSNR per sample |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for nfe in RUNS:
            path = OUT / f"{task}-{nfe}" / "summary.json"
            for c in json.loads(path.read_text()) if path.exists() else []:
                if c["method"] == "exact" and nfe != min(RUNS):
                    continue
                shown = "-" if c["method"] == "exact" else nfe
                lines.append(
                    f"| {task} | {c['method']} | {shown} | {c['sw2_ratio']:.2f} | {c['variance_ratio']:.2f} | "
                    f"{c['coverage_90']:.2f} | {c['psnr_of_mean']:.2f} | {c['psnr_per_sample']:.2f} |"
                )
    return "\n".join(lines) + "\n"


def particles(measurements: int, samples: int) -> None:
    """``particles.md``: how close the SMC samplers get on sr4 at 1000 evaluations per sample
    as the budget is split between particles and steps."""
    import dmap
    from dmap.analysis.fidelity_run import FidelityConfig, Problem, solve_row, summarize
    from dmap.presets import resolve_options

    prior = dmap.load_prior("gmm-mnist")
    problem = Problem(prior, FidelityConfig("gmm-mnist", "sr4", samples, measurements))
    lines = [
        "| method | particles | steps | SW2 / floor | variance ratio | coverage 90 % | PSNR of the mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in ("tds", "mcgdiff"):
        for p in PARTICLES:
            opts = resolve_options(method, prior.name, "sr4", particles=p).for_budget(1000)
            rows = [solve_row(prior, problem, method, 1000, j, opts)[0] for j in range(measurements)]
            c = summarize(rows, [method], [1000])[0]
            lines.append(
                f"| {method} | {p} | {opts.steps} | {c['sw2_ratio']:.2f} | {c['variance_ratio']:.2f} | "
                f"{c['coverage_90']:.2f} | {c['psnr_of_mean']:.2f} |"
            )
            print(lines[-1], flush=True)
    head = (
        f"gmm-mnist sr4, sigma_y 0.05, 1000 network evaluations per sample, {measurements} measurements x {samples} "
        f"samples; `python benchmarks/fidelity.py --particles --measurements {measurements} --samples {samples}`\n\n"
    )
    (OUT / "particles.md").write_text(head + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(PAPER_TASKS))
    ap.add_argument("--measurements", type=int, default=4)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--report", action="store_true", help="only write the table of what exists")
    ap.add_argument("--particles", action="store_true", help="only the SMC samplers' particle / step split on sr4")
    args = ap.parse_args()
    if args.particles:
        return particles(args.measurements, args.samples)
    tasks = args.tasks.split(",")
    for task in [] if args.report else tasks:
        for nfe, methods in RUNS.items():
            dmap_cli(
                "fidelity",
                "--task",
                task,
                "--methods",
                suited(task, methods),
                "--nfe",
                str(nfe),
                "--samples",
                str(args.samples),
                "--measurements",
                str(args.measurements),
                "--out",
                str(OUT / f"{task}-{nfe}"),
            )
    head = (
        f"gmm-mnist, sigma_y 0.05, {args.measurements} measurements x {args.samples} samples per method, each against "
        "2000 exact posterior samples (`exact`: a third exact set: the finite-sample reference); "
        f"`python benchmarks/fidelity.py --measurements {args.measurements} --samples {args.samples}`\n\n"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table.md").write_text(head + table(PAPER_TASKS))
    print((OUT / "table.md").read_text())


if __name__ == "__main__":
    main()
