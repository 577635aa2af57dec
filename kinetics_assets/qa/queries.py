"""The canned QA queries: plain SQL over the views (views.py), so a user can paste any of them into
`kinetics qa --sql`, with their titles and what an empty answer means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from kinetics_assets.qa.views import has_view

if TYPE_CHECKING:
    import duckdb

# Videos and depth are aggregated apart and joined by shard: a join by video_id would count a
# duplicated id twice over.
OVERVIEW_SQL = """
SELECT count(DISTINCT shard) AS shards,
       count(*) AS videos,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       round(coalesce(sum(duration_s) FILTER (WHERE status = 'ok'), 0) / 3600, 3) AS hours_ok,
       round(coalesce(sum(bytes) FILTER (WHERE status = 'ok'), 0) / 1e6, 1) AS video_mb,
       (SELECT count(*) FROM depth WHERE depth_status = 'ok') AS depth_ok,
       (SELECT count(*) FROM depth WHERE depth_status = 'failed') AS depth_failed
FROM videos
"""

SHARD_COUNTS_SQL = """
SELECT shard,
       count(*) AS videos,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       round(100.0 * count(*) FILTER (WHERE status = 'failed') / count(*), 1) AS failed_pct,
       round(coalesce(sum(duration_s) FILTER (WHERE status = 'ok'), 0) / 60, 1) AS minutes_ok,
       round(coalesce(sum(bytes) FILTER (WHERE status = 'ok'), 0) / 1e6, 2) AS video_mb
FROM videos
GROUP BY shard
ORDER BY shard
"""

FAILURE_CAUSES_SQL = """
SELECT coalesce(error_type, '(none)') AS error_type,
       count(*) AS videos,
       count(DISTINCT shard) AS shards,
       min(video_id) AS example_video,
       arg_min(error_message, video_id) AS example_message
FROM failures
GROUP BY 1
ORDER BY videos DESC, error_type
"""

DURATION_HISTOGRAM_SQL = """
SELECT floor(duration_s)::INTEGER AS from_s,
       floor(duration_s)::INTEGER + 1 AS to_s,
       count(*) AS videos
FROM videos
WHERE status = 'ok' AND duration_s IS NOT NULL
GROUP BY ALL
ORDER BY from_s
"""

# Source short side (rotation-agnostic) in pixel ranges. Each bin is labelled by the range it holds
# ("240-359 px"), not by a class name: a "240p" label on a 352x288 clip reads as a smaller video.
RESOLUTION_HISTOGRAM_SQL = """
WITH sized AS (
    SELECT least(source_width, source_height) AS short_side,
           source_width::VARCHAR || 'x' || source_height::VARCHAR AS size
    FROM videos
    WHERE status = 'ok' AND source_width IS NOT NULL AND source_height IS NOT NULL
), binned AS (
    SELECT CASE WHEN short_side < 240 THEN 0 WHEN short_side < 360 THEN 240 WHEN short_side < 480 THEN 360
                WHEN short_side < 720 THEN 480 WHEN short_side < 1080 THEN 720 ELSE 1080 END AS bin, size
    FROM sized
)
SELECT CASE bin WHEN 0 THEN '<240 px' WHEN 240 THEN '240-359 px' WHEN 360 THEN '360-479 px'
                WHEN 480 THEN '480-719 px' WHEN 720 THEN '720-1079 px' ELSE '>=1080 px' END AS source_short_side,
       count(*) AS videos,
       mode(size) AS most_common_size
FROM binned
GROUP BY bin
ORDER BY bin
"""

# Frame rates near a standard rate (within 0.05%, tighter than 29.97 vs 30) are named by it exactly
# ("12.5", "29.97"); any other rate falls into a 1 fps range labelled "[lo, hi)" so that no label
# claims a rate that no clip has (rounding would show 12.5 fps as "13").
STANDARD_FPS = (8, 10, 12, 12.5, 15, 16, 20, 23.976, 24, 25, 29.97, 30, 48, 50, 59.94, 60, 90, 100, 119.88, 120)
FPS_HISTOGRAM_SQL = (
    """
WITH standard(rate, name) AS (VALUES """  # noqa: S608 - the rates are the constants above
    + ", ".join(f"({rate}::DOUBLE, '{rate}')" for rate in STANDARD_FPS)
    + """
), rates AS (
    SELECT v.source_fps,
           (SELECT s.name FROM standard s WHERE abs(v.source_fps - s.rate) <= 0.0005 * s.rate
            ORDER BY abs(v.source_fps - s.rate) LIMIT 1) AS standard_name
    FROM videos v
    WHERE v.status = 'ok' AND v.source_fps IS NOT NULL
)
SELECT CASE WHEN standard_name IS NOT NULL THEN standard_name
            ELSE '[' || floor(source_fps)::INTEGER::VARCHAR || ', ' || (floor(source_fps)::INTEGER + 1)::VARCHAR || ')'
       END AS source_fps,
       count(*) AS videos,
       round(min(source_fps), 3) AS min_exact,
       round(max(source_fps), 3) AS max_exact
FROM rates
GROUP BY 1
ORDER BY min(source_fps)
"""
)

# `missing`: annotated clips with no row at all. `not_annotated`: rows (any status) whose clip the CSV lacks.
LABEL_COVERAGE_SQL = """
WITH annotated AS (
    SELECT a.label,
           count(DISTINCT a.video_id) AS expected,
           count(DISTINCT v.video_id) FILTER (WHERE v.status = 'ok') AS present_ok,
           count(DISTINCT v.video_id) FILTER (WHERE v.status = 'failed') AS failed,
           count(DISTINCT a.video_id) FILTER (WHERE v.video_id IS NULL) AS missing
    FROM annotations a LEFT JOIN videos v USING (video_id)
    GROUP BY a.label
), extra AS (
    SELECT coalesce(v.label, '(no label)') AS label, count(*) AS not_annotated
    FROM videos v ANTI JOIN annotations a USING (video_id)
    GROUP BY 1
)
SELECT label,
       coalesce(expected, 0) AS expected,
       coalesce(present_ok, 0) AS present_ok,
       coalesce(failed, 0) AS failed,
       coalesce(missing, 0) AS missing,
       coalesce(not_annotated, 0) AS not_annotated
FROM annotated FULL JOIN extra USING (label)
ORDER BY missing DESC, failed DESC, label
"""

LABELS_PRESENT_SQL = """
SELECT coalesce(label, '(no label)') AS label,
       NULL::BIGINT AS expected,
       count(*) FILTER (WHERE status = 'ok') AS present_ok,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       NULL::BIGINT AS missing,
       NULL::BIGINT AS not_annotated
FROM videos
GROUP BY 1
ORDER BY failed DESC, label
"""

DEPTH_COVERAGE_SQL = """
WITH v AS (
    SELECT shard, count(*) FILTER (WHERE status = 'ok') AS ok_videos FROM videos GROUP BY shard
), d AS (
    SELECT shard,
           count(*) FILTER (WHERE status = 'ok' AND depth_status = 'ok') AS depth_ok,
           count(*) FILTER (WHERE status = 'ok' AND depth_status = 'failed') AS depth_failed,
           count(*) FILTER (WHERE status = 'ok' AND depth_status = 'ok' AND NOT depth_pretrained) AS random_weights
    FROM depth GROUP BY shard
)
SELECT shard,
       ok_videos,
       coalesce(depth_ok, 0) AS depth_ok,
       coalesce(depth_failed, 0) AS depth_failed,
       ok_videos - coalesce(depth_ok, 0) - coalesce(depth_failed, 0) AS depth_missing,
       coalesce(random_weights, 0) AS random_weights
FROM v LEFT JOIN d USING (shard)
ORDER BY shard
"""

# What `kinetics status` needs from the table, one row per shard.
SHARD_STATE_SQL = """
WITH v AS (
    SELECT shard,
           count(*) FILTER (WHERE status = 'ok') AS ok,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           max(processed_at) AS last_processed_at
    FROM videos GROUP BY shard
), d AS (
    SELECT shard,
           count(*) FILTER (WHERE depth_status = 'ok') AS depth_ok,
           count(*) FILTER (WHERE depth_status = 'failed') AS depth_failed
    FROM depth GROUP BY shard
), t AS (
    SELECT shard,
           count(*) FILTER (WHERE status = 'ok' AND transcript_status IS NOT NULL) AS transcribed,
           count(*) FILTER (WHERE status = 'ok' AND transcript_status = 'ok') AS speech
    FROM transcripts GROUP BY shard
)
SELECT shard, ok, failed, coalesce(depth_ok, 0) AS depth_ok, coalesce(depth_failed, 0) AS depth_failed,
       coalesce(transcribed, 0) AS transcribed, coalesce(speech, 0) AS speech, last_processed_at
FROM v LEFT JOIN d USING (shard) LEFT JOIN t USING (shard)
ORDER BY shard
"""

DUPLICATE_IDS_SQL = """
SELECT video_id, count(*) AS copies, string_agg(DISTINCT shard, ', ') AS shards
FROM videos
GROUP BY video_id
HAVING count(*) > 1
ORDER BY copies DESC, video_id
"""

OK_WITHOUT_BYTES_SQL = """
SELECT shard, video_id, bytes
FROM videos
WHERE status = 'ok' AND (bytes IS NULL OR bytes <= 0)
ORDER BY shard, video_id
"""

# Transcripts: over ok videos that have been transcribed (a transcript status); an untranscribed
# table gives no rows, which the report shows as EMPTY_NOTES says.
TRANSCRIPT_STATUS_SQL = """
SELECT transcript_status,
       count(*) AS clips,
       round(count(*) / sum(count(*)) OVER (), 3) AS share
FROM transcripts
WHERE status = 'ok' AND transcript_status IS NOT NULL
GROUP BY 1
ORDER BY clips DESC, transcript_status
"""

TRANSCRIPT_LANGUAGES_SQL = """
SELECT coalesce(transcript_language, '(unknown)') AS language,
       count(*) AS clips,
       round(count(*) / sum(count(*)) OVER (), 3) AS share,
       round(avg(transcript_language_probability), 3) AS mean_probability
FROM transcripts
WHERE status = 'ok' AND transcript_status = 'ok'
GROUP BY 1
ORDER BY clips DESC, language
"""

TRANSCRIPT_LABELS_SQL = """
SELECT coalesce(label, '(no label)') AS label,
       count(*) AS clips,
       count(*) FILTER (WHERE transcript_status = 'ok') AS with_speech,
       round(count(*) FILTER (WHERE transcript_status = 'ok') / count(*), 3) AS speech_share
FROM transcripts
WHERE status = 'ok' AND transcript_status IS NOT NULL
GROUP BY 1
ORDER BY speech_share DESC, label
"""

TRANSCRIPT_EXAMPLES_SQL = """
SELECT video_id, label, transcript_language AS language, transcript_text AS text
FROM transcripts
WHERE status = 'ok' AND transcript_status = 'ok'
ORDER BY video_id
LIMIT 5
"""

# Black and frozen clips: over ok videos whose frame statistics were measured (frame_stats); a table
# without them gives no rows, which the report shows as EMPTY_NOTES says.
BLACK_OR_FROZEN_SQL = """
SELECT shard, video_id, label, round(duration_s, 2) AS duration_s,
       round(frame_stats_black_s, 2) AS black_s, round(frame_stats_frozen_s, 2) AS frozen_s
FROM videos
WHERE status = 'ok' AND frame_stats_status = 'ok'
  AND (frame_stats_black_s * 2 >= duration_s OR frame_stats_frozen_s * 2 >= duration_s)
ORDER BY shard, video_id
LIMIT 50
"""

# Near-duplicate pairs, best first, with each video's label and shard. Empty until near_duplicates has run.
NEAR_DUPLICATES_SQL = """
SELECT round(score, 3) AS score, reason, video_a, label_a, shard_a, video_b, label_b, shard_b,
       round(offset_s, 1) AS offset_s, round(overlap_s, 1) AS overlap_s, duplicate_of, group_size
FROM near_duplicates
ORDER BY score DESC, overlap_s DESC, video_a, video_b
LIMIT 50
"""

QUERIES: dict[str, str] = {
    "overview": OVERVIEW_SQL,
    "shard_counts": SHARD_COUNTS_SQL,
    "failure_causes": FAILURE_CAUSES_SQL,
    "duration_histogram": DURATION_HISTOGRAM_SQL,
    "resolution_histogram": RESOLUTION_HISTOGRAM_SQL,
    "fps_histogram": FPS_HISTOGRAM_SQL,
    "label_coverage": LABEL_COVERAGE_SQL,
    "depth_coverage": DEPTH_COVERAGE_SQL,
    "transcript_status": TRANSCRIPT_STATUS_SQL,
    "transcript_languages": TRANSCRIPT_LANGUAGES_SQL,
    "transcript_labels": TRANSCRIPT_LABELS_SQL,
    "black_or_frozen": BLACK_OR_FROZEN_SQL,
    "near_duplicates": NEAR_DUPLICATES_SQL,
}
TRANSCRIPT_QUERIES = ("transcript_status", "transcript_languages", "transcript_labels")

TITLES = {
    "overview": "Overview",
    "shard_counts": "Videos per shard",
    "failure_causes": "Failure causes",
    "duration_histogram": "Duration of ok videos (1 s bins)",
    "resolution_histogram": "Source resolution of ok videos (short side, pixel ranges)",
    "fps_histogram": "Source frame rate of ok videos (standard rates exact, others in [lo, hi) ranges)",
    "label_coverage": "Labels: annotated vs present",
    "depth_coverage": "Depth coverage per shard",
    "transcript_status": "Transcripts of ok videos by status (share with speech: ok)",
    "transcript_languages": "Languages of clips with speech",
    "transcript_labels": "Speech per label (transcribed ok videos)",
    "black_or_frozen": "Clips black or frozen for half their length or more",
    "near_duplicates": "Near-duplicate pairs, best first (duplicate_of: the video each group keeps)",
}

NO_TRANSCRIPTS = "no transcripts yet (materialize transcripts)"
NO_SPEECH = "no clip with speech yet"
EMPTY_NOTES = {
    "transcript_status": NO_TRANSCRIPTS,
    "transcript_languages": NO_SPEECH,
    "transcript_labels": NO_TRANSCRIPTS,
    "black_or_frozen": "none black or frozen (or no frame statistics yet: materialize frame_stats)",
    "near_duplicates": "no near-duplicates found (or not looked for yet: materialize clip_fingerprints, "
    "then near_duplicates)",
}
NEEDS_COLUMN = {"black_or_frozen": "frame_stats_status"}
"""Queries over a stage's columns: on a table without them, they answer with no rows."""
"""What an empty result of a query means, said instead of "(no rows)"."""


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def run_qa(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """Every canned query, in display order. Label coverage compares with the annotations when given."""
    with_annotations = has_view(con, "annotations")
    out = {}
    columns = {row[0] for row in con.execute("SELECT column_name FROM information_schema.columns").fetchall()}
    for name, sql in QUERIES.items():
        without_annotations = name == "label_coverage" and not with_annotations
        needed = NEEDS_COLUMN.get(name)
        if needed and needed not in columns:
            out[name] = pa.table({"shard": pa.array([], pa.string()), "video_id": pa.array([], pa.string())})
            continue
        out[name] = query(con, LABELS_PRESENT_SQL if without_annotations else sql)
    return out


def contact_sheet_ids(con: duckdb.DuckDBPyConnection, count: int = 8) -> list[str]:
    """Ok videos for the contact sheet: those with depth first, one per label before repeating labels."""
    rows = con.execute(
        """
        SELECT video_id FROM (
            SELECT v.video_id, v.shard,
                   EXISTS (SELECT 1 FROM depth d WHERE d.video_id = v.video_id AND d.depth_status = 'ok') AS has_depth,
                   row_number() OVER (PARTITION BY v.label ORDER BY v.shard, v.video_id) AS nth_of_label
            FROM videos v
            WHERE v.status = 'ok'
        )
        ORDER BY has_depth DESC, nth_of_label, shard, video_id
        LIMIT ?
        """,
        [count],
    ).fetchall()
    return list(dict.fromkeys(r[0] for r in rows))
