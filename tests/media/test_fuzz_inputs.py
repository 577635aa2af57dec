"""A short fuzz run: mutated clips through the transcode engine and the DataLoader's decode, each in
a watched worker process (the full run is `bench/fuzz_inputs.py`; figures in BENCHMARKS.md)."""

from __future__ import annotations

import os
from pathlib import Path

from kinetics_assets.media.transcode import ERROR_KINDS
from tests.harness.fuzz import MUTATIONS, run_fuzz


def test_mutated_clips_end_ok_or_with_a_known_error_and_never_hang_or_crash(tmp_path: Path):
    real = os.environ.get("KINETICS_REAL_VIDEOS_DIR")  # real clips join the generated ones when present
    report = run_fuzz(
        seed=5,
        count=2 * len(MUTATIONS),
        workdir=tmp_path / "work",
        real_dir=Path(real) if real and Path(real).is_dir() else None,
        timeout_s=20.0,
    )
    assert report.violations == []
    assert report.hangs == 0
    assert report.crashes == 0
    assert report.by_mutation == dict.fromkeys(MUTATIONS, 2)
    assert set(report.transcode) <= ERROR_KINDS | {"ok"}
    assert sum(report.transcode.values()) == report.inputs == 2 * len(MUTATIONS)
    # The empty file is named as such; a stream without packets is never "ok".
    assert report.transcode_by_mutation["empty"] == {"empty_file": 2}
    assert "ok" not in report.transcode_by_mutation["zero_length_stream"]
    assert report.decode.get("ok", 0) < report.inputs
    assert sum(report.depth_decode.values()) == report.inputs
    assert report.depth_decode.get("ok", 0) < report.inputs


def _audio_only(path: Path) -> bytes:
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


def test_decodes_of_a_file_without_video_name_the_cause(tmp_path: Path):
    # Found by the fuzz campaign: a file with no video stream failed the DataLoader and depth
    # decodes with "IndexError: tuple index out of range" (a header mutation left only the audio
    # track), which told a reader nothing.
    import numpy as np
    import pytest

    from kinetics_assets.media.decode import decode_clip, decode_frames, frame_timestamps, sample_clip
    from kinetics_assets.media.sampling import ClipSampling

    data = _audio_only(tmp_path / "audio.mp4")
    for decode in (
        lambda: sample_clip(data, ClipSampling(), rng=np.random.default_rng(0)),
        lambda: decode_clip(data, [0]),
        lambda: frame_timestamps(data),
        lambda: decode_frames(data),
    ):
        with pytest.raises(ValueError, match="no video stream in the 'mov,mp4"):
            decode()


def test_decodes_of_a_stream_with_an_unknown_codec_name_the_cause(tmp_path: Path):
    # Found by the fuzz campaign: a bit flip in the codec's four-character code left a stream
    # without a decoder, and the decode failed with "AttributeError: 'NoneType' object has no
    # attribute 'width'".
    import numpy as np
    import pytest

    from kinetics_assets.media.decode import frame_timestamps, sample_clip
    from kinetics_assets.media.sampling import ClipSampling
    from tests.harness.clips import make_clip

    data = make_clip(tmp_path / "c.mp4", width=64, height=48, seconds=0.5).read_bytes()
    assert data.count(b"avc1") >= 1
    unknown = data.replace(b"avc1", b"zzzz")
    for decode in (
        lambda: sample_clip(unknown, ClipSampling(), rng=np.random.default_rng(0)),
        lambda: frame_timestamps(unknown),
    ):
        with pytest.raises(ValueError, match="video stream #0 has no decoder"):
            decode()
