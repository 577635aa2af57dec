"""Progress lines of long steps: count, rate and time left, as the Dagster log shows them."""

from kinetics_assets.steps.progress import Progress


def test_progress_lines_give_count_rate_and_time_left():
    lines: list[str] = []
    progress = Progress(lines.append, "depth", "video", total=4, every_s=0.0)
    progress.skipped(1)  # one video needed no work: the total shrinks to 3
    for frames in (10, 10, 12):
        progress.advance(frames=frames)
    assert len(lines) == 3
    assert lines[0].startswith("depth: 1/3 videos, ")
    assert "s left" in lines[0]
    assert lines[-1].startswith("depth: 3/3 videos, ")
    assert "32 frames" in lines[-1]
    assert "frames/s" in lines[-1]
    assert lines[-1].endswith("about 0 s left")


def test_progress_without_a_total_and_between_intervals():
    lines: list[str] = []
    progress = Progress(lines.append, "transcode", "clip", total=None, every_s=3600.0)
    for _ in range(5):
        progress.advance()
    assert lines == []  # nothing due yet: a line every `every_s`, or at the end of a known total
    progress = Progress(lines.append, "transcode", "clip", total=None, every_s=0.0)
    progress.advance()
    assert lines[0].startswith("transcode: 1 clips, ")
    assert "left" not in lines[0]
    progress.close()
