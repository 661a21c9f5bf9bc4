#!/usr/bin/env python3
"""The performance table of `make bench`: layercorr against its peers, one
line per figure, from the result files of the benchmarks run just before.

Reads out/bench/inference.json (benches/bench_inference.py) and
out/bench/corr.json (benches/bench_corr.py); a figure whose run is missing
is printed as "-". Every ratio compares two measurements of the same run
(the correlation rows: paired rounds, kernel and query in the same minute),
so they are what to compare across machines; the seconds are not. The
machine's SIMD level comes first, since every figure depends on it.

Usage: python benches/summary.py [--inference FILE] [--corr FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

CORR_SHAPES = ((1000, 100352), (2000, 200704))
RSS_SHAPE = (2000, 200704)


def load(path: Path) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def per_image(inf: dict, prefix: str) -> dict | None:
    return next((r for r in inf.get("per_image", []) if r.get("label", "").startswith(prefix)),
                None)


def times(x: float | None, words: str) -> str:
    """`0.42x its speed`, or "-" when a figure is missing."""
    return "-" if x is None else f"{x:.2f}x {words}".rstrip()


def ms(r: dict | None) -> float | None:
    return r.get("ms_per_image") if r else None


def inference_rows(inf: dict) -> list[list[str]]:
    table, scalar = per_image(inf, "SQL table"), per_image(inf, "SQL scalar")
    # The table form's call alone: what layercorr does, without the part
    # DuckDB spends appending the lists to a table.
    counted = per_image(inf, "call only: SQL table")
    orts = [r for r in inf.get("per_image", []) if r.get("label", "").startswith("ORT")]
    best = min(orts, key=lambda r: r["ms_per_image"]) if orts else None
    rows = [["forward passes, table form, 12 layers kept",
             f"{B.fmt(ms(table), '.1f')} ms/image",
             f"onnxruntime best ({best['label'] if best else '-'}) {B.fmt(ms(best), '.1f')} ms",
             times(B.ratio(ms(best), ms(table)), "its speed")],
            ["same, counted instead of stored (no CREATE TABLE)",
             f"{B.fmt(ms(counted), '.1f')} ms/image",
             f"onnxruntime best {B.fmt(ms(best), '.1f')} ms",
             times(B.ratio(ms(best), ms(counted)), "its speed")],
            ["scalar form, 12 layers kept",
             f"{B.fmt(ms(scalar), '.1f')} ms/image, "
             f"{B.fmt(scalar.get('cpu_util') if scalar else None, '.2f')} cores busy",
             f"table form {B.fmt(ms(table), '.1f')} ms",
             times(B.ratio(ms(table), ms(scalar)), "its speed")]]
    e2e = inf.get("e2e", {})
    one, py = e2e.get("sql_fused", {}).get("seconds"), e2e.get("python", {}).get("seconds")
    rows.append([f"{e2e.get('images', 500)} images, 12 layers, end to end, one statement",
                 f"{B.fmt(one, '.1f')} s", f"onnxruntime + numpy {B.fmt(py, '.1f')} s",
                 times(B.ratio(py, one), "faster")])
    return rows


def shape(corr: dict, n: int, d: int) -> dict:
    return next((r for r in corr.get("corr", []) if (r["n"], r["d"]) == (n, d)), {})


def corr_rows(corr: dict) -> list[list[str]]:
    rows = []
    for n, d in CORR_SHAPES:
        r = shape(corr, n, d)
        dq = r.get("duckdb", {})
        kernel = B.median(dq.get("paired_kernel_seconds_all", [])) if dq else None
        np64 = r.get("np64", {}).get("seconds_median")
        peer = f"its kernel {B.fmt(kernel, '.2f')} s" + (
            f"; np.corrcoef {B.fmt(np64, '.2f')} s" if np64 else "")
        rows.append([f"layer_corr through DuckDB, N = {n}, D = {d}",
                     f"{B.fmt(dq.get('seconds_median'), '.2f')} s "
                     f"(in the database {B.fmt(dq.get('in_db_seconds_median'), '.2f')} s)",
                     peer,
                     times(dq.get("paired_ratio_median"), "the kernel")
                     + f" (in the database {times(dq.get('paired_in_db_ratio_median'), '')}; "
                     + f"CPU time {times(dq.get('paired_in_db_cpu_ratio_median'), '')})"])
        scan = dq.get("scan_seconds_median")
        if scan and kernel:
            k_cpu = B.median(dq.get("paired_kernel_cpu_seconds_all", []))
            s_cpu = B.median(dq.get("scan_cpu_seconds_all", []))
            cpu_floor = (k_cpu + s_cpu) / k_cpu if k_cpu == k_cpu and s_cpu == s_cpu and k_cpu else None
            rows.append(["  of which DuckDB scanning the lists alone", f"{B.fmt(scan, '.2f')} s",
                         "", "floor: kernel + scan = " + times((kernel + scan) / kernel, "")
                         + f" (CPU time {times(cpu_floor, '')})"])
    big = shape(corr, *CORR_SHAPES[-1])
    vs = corr.get("machine", {}).get("kernel_vs_sgemm")
    if vs:
        # Both rates read in the same rounds (bench_corr's kernel-sgemm child).
        rows.append([f"kernel rate at N = {vs['n']}, D = {vs['d']}",
                     f"{B.median(vs['kernel_gflops_all']):.0f} GFLOP/s",
                     f"numpy SGEMM 2048^3 {B.median(vs['sgemm_gflops_all']):.0f} GFLOP/s, "
                     "same rounds",
                     f"{100 * vs['paired_ratio_median']:.0f}% (numpy's own x @ x.T "
                     f"{B.median(vs['syrk_gflops_all']):.0f} GFLOP/s: "
                     f"{100 * vs['paired_syrk_ratio_median']:.0f}%)"])
    else:
        rates = corr.get("machine", {}).get("sgemm_gflops", {})
        k = big.get("kernel", {}).get("seconds_median")
        rate = big["n"] ** 2 * big["d"] / k / 1e9 if k else None
        best = max(rates.items(), key=lambda kv: kv[1]) if rates else None
        rows.append([f"kernel rate at N = {CORR_SHAPES[-1][0]}, D = {CORR_SHAPES[-1][1]}",
                     f"{B.fmt(rate, '.0f')} GFLOP/s",
                     f"{best[0]} SGEMM 2048^3 {best[1]:.0f} GFLOP/s" if best else "SGEMM -",
                     f"{B.fmt(100 * rate / best[1] if rate and best else None, '.0f')}%"])
    r = shape(corr, *RSS_SHAPE)
    dq, inp = r.get("duckdb", {}), r.get("kernel", {}).get("input_bytes")
    peak, scan_peak = dq.get("query_peak_rss_bytes"), dq.get("scan_peak_rss_bytes")
    rows.append(["peak RSS of that query", times(B.ratio(peak, inp), "the input"),
                 "the table + DuckDB's scan alone " + times(B.ratio(scan_peak, inp), "the input"),
                 times(B.ratio(peak, scan_peak), "the scan's")])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inference", default=str(B.OUT_DIR / "inference.json"))
    ap.add_argument("--corr", default=str(B.OUT_DIR / "corr.json"))
    args = ap.parse_args()
    inf, corr = load(Path(args.inference)), load(Path(args.corr))
    machine = corr.get("machine") or inf.get("machine") or B.cpu_info()
    print()
    print(f"== layercorr vs peers: SIMD {machine.get('simd', '?')}, {machine.get('cpu_model', '?')}, "
          f"{machine.get('logical_cpus', '?')} logical CPUs ==")
    for name, got in (("inference", inf), ("corr", corr)):
        if not got:
            print(f"({name} results missing: run benches/bench_{name}.py)")
    B.print_table(["what", "layercorr", "peer", "ratio"], inference_rows(inf)[:2]
                  + corr_rows(corr) + inference_rows(inf)[2:], "llll")
    print("ratios: speed relative to the peer where it says 'its speed' / 'faster', time relative "
          "to the kernel for layer_corr (paired rounds, medians); the seconds are this run's and "
          "vary with the machine's load")


if __name__ == "__main__":
    main()
