"""analyses.scale_resnet (ResNet-18 at issue 14's n_v = 4, m = 80) and scale_bench's
--quick settings: the jobs, and the splicing of the ResNet-18 rows into the report.
Text only: no model is built."""

from __future__ import annotations

import pytest

from analyses import scale_bench, scale_resnet

REPORT = """# Spectra at scale

Models: ResNet-18 (registry `resnet18`), a batch of 8 synthetic 3x32x32 images; the MLP.

## Time and memory

| model | P | task | mode | why | time | HVPs | HVP share | extra peak RSS | extra peak anon RSS | model | result |
|---|---|---|---|---|---|---|---|---|---|---|---|
| resnet18 | 11,173,962 | density n_v=2, m=8 | bounded | requested | 349.1 s | 16 | 97% | 356 MiB | 538 MiB | 43 MiB | nodes in [-37.7, 95.2] |
| resnet18 | 11,173,962 | top5 | device | requested | 207.9 s | 10 | 93% | 1590 MiB | 1768 MiB | 43 MiB | 95.68 |
| mlp-1.1m | 1,126,410 | top5 | device | requested | 7.0 s | 14 | 89% | 224 MiB | 231 MiB | 4 MiB | 20.56 |

## Targets

Read the times with care.

- ResNet-18 density in the bounded mode within model + 1 GB: extra peak RSS 356 MiB (n_v=2, m=8).
- 1.13M MLP: bounded density no slower than full: **met**.

## Where the time goes

kept
"""


def _result(**kw: object) -> dict:
    r = {"mode": "bounded", "reason": "requested", "P": 11173962, "seconds": 1500.0,
         "hvp_seconds": 1450.0, "num_matvecs": 320, "model_mib": 42.6,
         "extra_maxrss_mib": 900.0, "extra_anon_mib": 1100.0, "range": [-40.0, 96.0],
         "load": [3.1, 5.2], "nbytes": 1072700352}
    r.update(kw)
    return r


def _pairs() -> list[tuple[dict, dict]]:
    d, t, lm, _ = scale_resnet.resnet_jobs()
    return [(d, _result()),
            (t, _result(mode="device", values=[96.0, 76.0, 63.0, 39.0, 21.0], converged=True,
                        num_matvecs=61)),
            (lm, {"error": "RuntimeError: out of memory", "load": [4.0, 4.0]})]


def test_resnet_jobs_are_the_issue_setting() -> None:
    d, t, lm, tr = scale_resnet.resnet_jobs()
    assert (d["task"], d["mode"], d["n_v"], d["m"]) == ("density", "bounded", 4, 80)
    assert (t["task"], lm["task"], tr["task"]) == ("top5", "lmin", "trace")
    assert t["mode"] == lm["mode"] == "auto" and t["max_matvecs"] == 150
    assert {j["batch"] for j in (d, t, lm, tr)} == {4}
    with pytest.raises(ValueError, match="unknown task 'eig'"):
        scale_resnet.resnet_jobs(tasks=("eig",))


def test_splice_replaces_the_resnet_rows_and_target() -> None:
    out = scale_resnet.splice(REPORT, _pairs(), "2026-11-29")
    lines = out.split("\n")
    rows = [ln for ln in lines if ln.startswith("| resnet18 |")]
    assert len(rows) == 3
    assert "density n_v=4, m=80" in rows[0] and "320" in rows[0] and "900 MiB" in rows[0]
    assert "96, 76, 63, 39, 21 |" in rows[1]  # converged: no "(not converged ...)"
    assert "FAILED RuntimeError: out of memory" in rows[2]
    assert "| mlp-1.1m | 1,126,410 | top5 |" in out  # other rows and sections kept
    assert out.endswith("## Where the time goes\n\nkept\n")
    assert "n_v=2, m=8" not in out
    assert "a batch of 4 synthetic 3x32x32 images; the MLP." in out
    # the target, on the extra peak RSS (900 MiB: met); the anonymous 1100 MiB is over
    target = [ln for ln in lines if ln.startswith(scale_resnet.TARGET_PREFIX)]
    assert len(target) == 1 and "n_v=4, m=80" in target[0] and "**met**" in target[0]
    assert "1100 MiB, is over 1 GiB" in target[0]
    missed = scale_resnet.target_line([(_pairs()[0][0], _result(extra_maxrss_mib=1100.0))])
    assert missed is not None and "**missed**" in missed
    notes = [ln for ln in lines if ln.startswith(scale_resnet.NOTES_PREFIX)]
    assert len(notes) == 1 and "--tasks density --nv 4 --m 80 --batch 4" in notes[0]
    assert "load 3.1-5.2" in notes[0]
    assert "would hold 14.3 GiB" in notes[0] and "vectors: 1023 MiB" in notes[0]
    assert "code" not in notes[0]
    d, r = _pairs()[0]
    assert ", code abc123" in scale_resnet.notes([(d, {**r, "code": "abc123"})], "today")
    # the notes follow the table
    assert lines.index(notes[0]) > lines.index(next(ln for ln in lines if "| mlp-1.1m |" in ln))
    assert scale_resnet.splice(out, _pairs(), "2026-11-29") == out  # idempotent


def test_splice_of_some_tasks_keeps_the_other_rows() -> None:
    pairs = _pairs()[:1]  # the density only
    out = scale_resnet.splice(REPORT, pairs, "2026-11-29")
    rows = [ln for ln in out.split("\n") if ln.startswith("| resnet18 |")]
    assert len(rows) == 2 and "density n_v=4, m=80" in rows[0] and "| top5 | device |" in rows[1]
    assert ("a batch of 8 synthetic 3x32x32 images (4 in the rows measured by "
            "`analyses.scale_resnet`, named below the table); the MLP." in out)
    assert scale_resnet.splice(out, pairs, "2026-11-29") == out  # idempotent
    # then the others: all rows ours, the Models line says 4 alone
    out = scale_resnet.splice(out, _pairs(), "2026-11-29")
    assert "a batch of 4 synthetic 3x32x32 images; the MLP." in out


def test_splice_needs_a_table() -> None:
    with pytest.raises(ValueError, match="no 'Time and memory' table"):
        scale_resnet.splice("# empty\n", _pairs(), "2026-11-29")


def test_quick_has_the_full_rows_smaller_and_full_is_unchanged() -> None:
    def key(j: dict) -> tuple:
        return (j["model"], j["task"], j["mode"], "policy" in j)

    full, quick = scale_bench.jobs(False), scale_bench.jobs(True)
    for f, q in zip(full, quick):
        assert [key(j) for j in f] == [key(j) for j in q]
        for jf, jq in zip(f, q):
            assert "batch" not in jf and "cache" not in jf
            for size in ("n_v", "m", "max_matvecs", "matvecs"):
                if size in jf:
                    assert jq[size] <= jf[size]
    assert all(j.get("batch") == 2 for j in quick[1] if j["model"] == "resnet18")
    assert all(j.get("cache") for j in quick[0] + quick[1] if j["model"] == "mlp-1.1m")
    # the full mode's sizes, as before this option
    resnet = [j for j in full[1] if j["model"] == "resnet18"]
    assert resnet[0]["n_v"] == 2 and resnet[0]["m"] == 8 and resnet[2]["max_matvecs"] == 10


def test_quick_main_writes_the_report_with_a_cache_folder(tmp_path, monkeypatch) -> None:
    seen: list[tuple[dict, str | None]] = []

    def fake_run_job(job: dict, log) -> dict:
        import os

        seen.append((job, os.environ.get(scale_bench.CACHE_ENV)))
        if job["task"] == "density":
            return _result(mode=job["mode"] if job["mode"] != "-" else "full")
        if job["task"] == "trace":
            return _result(mode="-", values=[1.0])
        return _result(mode=job["mode"], values=[1.0], converged=False)

    monkeypatch.setattr(scale_bench, "run_job", fake_run_job)
    monkeypatch.setenv(scale_bench.CACHE_ENV, "")  # so that main's value is undone after
    out = tmp_path / "quick.md"
    scale_bench.main(["--quick", "--out", str(out)])
    text = out.read_text()
    assert len(seen) == sum(map(len, scale_bench.jobs(True)))
    folders = {f for _, f in seen}
    assert len(folders) == 1 and folders.isdisjoint({None, ""})  # one folder for the run
    assert "a batch of 2 synthetic 3x32x32 images" in text
    assert "--quick" in text and "Partial" not in text


def test_read_log_keeps_the_last_result_in_task_order(tmp_path) -> None:
    d, t = scale_resnet.resnet_jobs()[:2]
    log = tmp_path / "r.log"
    log.write_text("\n".join([f"  {t} -> {{'seconds': 1.0}} (1 s)", "wrote x",
                              f"  {d} -> {{'seconds': 2.0}} (2 s)",
                              f"  {t} -> {{'seconds': 3.0}} (3 s)"]) + "\n")
    pairs = scale_resnet.read_log(log)
    assert [(j["task"], r["seconds"]) for j, r in pairs] == [("density", 2.0), ("top5", 3.0)]


def test_a_max_memory_density_row_joins_the_notes_and_the_target() -> None:
    d = scale_resnet.resnet_jobs(tasks=("density",))[0]
    dm = scale_resnet.resnet_jobs(tasks=("density",), max_memory="1GB")[0]
    assert dm["max_memory"] == "1GB" and "max_memory" not in d
    pairs = [(d, _result()), (dm, _result(nbytes=804525264, extra_maxrss_mib=624.0,
                                          extra_anon_mib=811.0))]
    notes = scale_resnet.notes(pairs, "today")
    assert notes.count("would hold 14.3 GiB") == 1
    assert "vectors: 1023 MiB, 767 MiB with max_memory=1GB." in notes
    assert "--max-memory 1GB" in notes
    line = scale_resnet.target_line(pairs)
    assert line is not None and "extra peak RSS 900 MiB" in line
    assert line.endswith("; with max_memory=1GB: extra peak RSS 624 MiB, anonymous 811 MiB.")
