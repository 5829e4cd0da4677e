"""Prometheus text format by hand: well-formed, cumulative, and summed across workers."""

from __future__ import annotations

import json
import re

from spamlearn.metrics import LATENCY_BUCKETS, Metrics, SnapshotFolder, merge_snapshots, render

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_]+="(\\.|[^"\\])*",?)*\})? (\S+)$')


def parse(text: str) -> dict[str, list[tuple[str, float]]]:
    """A strict reader of the exposition format: every line a comment or a valid sample,
    and the samples of one family contiguous, after its TYPE line."""
    families: dict[str, list[tuple[str, float]]] = {}
    current = None
    finished = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in families, f"{name} declared twice"
            if current:
                finished.add(current)
            current = name
            families[name] = []
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"malformed line: {line!r}"
        sample = match.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", sample) if sample not in families else sample
        assert family == current, f"{sample} outside its family block"
        families[family].append((line.rsplit(" ", 1)[0], float(match.group(5))))
    return families


def filled() -> Metrics:
    metrics = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 0.015, 30.0):
        metrics.observe_request("/score", 200, seconds)
    metrics.observe_request("/learn", 401, 0.002)
    metrics.count_verdict("spam")
    metrics.count_verdict("ham")
    metrics.count_learn("learned")
    metrics.count_parse_failure()
    metrics.count_reload("ok")
    metrics.count_spamd("CHECK", "EX_OK")
    return metrics


def test_render_is_well_formed_and_histograms_are_cumulative():
    text = render(filled().snapshot(), [
        ("model_age_seconds", "age", {"model": "shared"}, 12.5),
        ("model_revision", "rev", {"model": "shared"}, 3),
        ("model_age_seconds", "age", {"model": "default"}, 100),  # interleaved on purpose
    ])
    families = parse(text)
    buckets = [v for name, v in families["spamlearn_http_request_duration_seconds"]
               if name.startswith("spamlearn_http_request_duration_seconds_bucket") and '"/score"' in name]
    assert buckets == sorted(buckets) and len(buckets) == len(LATENCY_BUCKETS) + 1
    assert buckets[0] == 1 and buckets[-1] == 5, "30 s only in +Inf"
    assert 'spamlearn_http_request_duration_seconds_count{endpoint="/score",status="200"} 5' in text
    assert 'spamlearn_http_requests_total{endpoint="/learn",status="401"} 1' in text
    assert [v for _, v in families["spamlearn_model_age_seconds"]] == [12.5, 100]
    assert families["spamlearn_parse_failures_total"] == [("spamlearn_parse_failures_total", 1.0)]
    assert families["spamlearn_spamd_requests_total"] == [
        ('spamlearn_spamd_requests_total{command="CHECK",result="EX_OK"}', 1.0)]


def test_a_spamd_request_marks_the_worker_changed_for_its_snapshot():
    """A worker answering only spamc never wrote its snapshot: its verdicts
    were missing from the /metrics another worker answered."""
    metrics = Metrics()
    metrics.count_verdict("spam")
    metrics.count_spamd("CHECK", "EX_OK")
    assert metrics.changed


def test_label_values_are_escaped():
    text = render(Metrics().snapshot(), [("model_revision", "r", {"model": 'a"b\\c\nd'}, 1)])
    assert 'spamlearn_model_revision{model="a\\"b\\\\c\\nd"} 1' in text
    parse(text)


def test_snapshots_of_several_workers_add_up(tmp_path):
    one, two = filled(), filled()
    two.observe_request("/score", 200, 0.003)
    SnapshotFolder(tmp_path, pid=1).write(one)
    SnapshotFolder(tmp_path, pid=2).write(two)
    assert not one.changed, "a written snapshot is not written again until something changes"
    total = merge_snapshots(SnapshotFolder(tmp_path, pid=3).read_all())
    assert total["requests"]["/score\t200"] == 11
    assert total["verdicts"] == {"spam": 2, "ham": 2} and total["parse_failures"] == 2
    assert total["spamd"] == {"CHECK\tEX_OK": 2}
    latency = total["latency"]["/score\t200"]
    assert sum(latency[:-1]) == 11 and abs(latency[-1] - 2 * (0.0005 + 0.006 + 0.015 + 30) - 0.003) < 1e-9
    parse(render(total))
    assert not list(tmp_path.glob(".worker-*")), "no temporary files left behind"


def test_the_snapshots_of_workers_that_are_gone_are_added_up_in_one_file(tmp_path):
    """A SIGHUP replaces every worker: each left a file, read by every scrape
    for the life of the service (a soak: +2 files a SIGHUP with 2 workers;
    730 files took 130-195 ms a scrape, on the event loop)."""
    running: set[int] = set()
    reader = SnapshotFolder(tmp_path, pid=1, alive=running.__contains__)
    running.add(1)
    reader.write(filled())
    expected = 5
    for generation in range(10):          # ten SIGHUPs of two workers
        pids = [100 + 2 * generation, 101 + 2 * generation]
        running.update(pids)
        for pid in pids:
            one = Metrics()
            one.observe_request("/score", 200, 0.002)
            SnapshotFolder(tmp_path, pid=pid).write(one)
        expected += 2
        total = merge_snapshots(reader.read_all())
        assert total["requests"]["/score\t200"] == expected     # never backwards, never twice
        running.difference_update(pids)
    total = merge_snapshots(reader.read_all())
    assert total["requests"]["/score\t200"] == expected
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["retired.json", "worker-1.json"]
    assert not list(tmp_path.glob(".worker-*")), "no temporary files left behind"
    parse(render(total))


def test_a_fold_cut_short_counts_the_workers_it_named_once(tmp_path):
    """Killed between writing retired.json and removing the files it took in:
    a reader skips those files, and the next fold removes them."""
    gone = Metrics()
    gone.observe_request("/score", 200, 0.002)
    SnapshotFolder(tmp_path, pid=7).write(gone)
    (tmp_path / "retired.json").write_text(json.dumps({"snapshot": gone.snapshot(), "folded": [7]}))
    alive = {7}                           # not gone yet for this reader: no fold
    reader = SnapshotFolder(tmp_path, pid=1, alive=alive.__contains__)
    assert merge_snapshots(reader.read_all())["requests"] == {"/score\t200": 1}
    alive.clear()
    assert merge_snapshots(reader.read_all())["requests"] == {"/score\t200": 1}
    assert not (tmp_path / "worker-7.json").exists()
    assert json.loads((tmp_path / "retired.json").read_text())["folded"] == []


def test_snapshots_that_cannot_be_added_up_are_read_as_they_are(tmp_path, monkeypatch):
    """A full /tmp: retired.json cannot be written; the files stay, and count."""
    SnapshotFolder(tmp_path, pid=7).write(filled())
    reader = SnapshotFolder(tmp_path, pid=1, alive=lambda pid: False)

    def full(target, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reader, "_write", full)
    assert merge_snapshots(reader.read_all())["requests"]["/score\t200"] == 5
    assert (tmp_path / "worker-7.json").exists() and not (tmp_path / "retired.json").exists()
