from biocap_assets.progress import ProgressLog, format_seconds, progress_line


def test_progress_line_has_share_rate_and_eta():
    line = progress_line("shard 000001", 100, 400, 10.0, "samples")
    assert line == "shard 000001: 100/400 samples (25%), 10.0 samples/s, ETA 30s"


def test_eta_is_unknown_before_any_work():
    assert progress_line("wiki", 0, 50, 0.0, "taxa").endswith("ETA ?")


def test_long_etas_read_as_minutes_and_hours():
    assert format_seconds(59.6) == "60s"
    assert format_seconds(600) == "10m00s"
    assert format_seconds(3 * 3600 + 125) == "3h02m"


def test_progress_log_throttles_but_always_reports_the_end():
    lines: list[str] = []
    now = [0.0]
    progress = ProgressLog(lines.append, "train", 10, "steps", min_interval=5, clock=lambda: now[0])
    for step in range(1, 11):
        now[0] = float(step)
        progress(step, extra=f"loss {1 / step:.2f}")
    # step 1 logs, then every 5 s (step 6), and the last step whatever the interval
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/10", "6/10", "10/10"]
    assert lines[-1].endswith("ETA 0s; loss 0.10")
