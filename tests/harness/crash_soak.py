"""Randomized crash soak: shards materializing through `dagster asset materialize` while a driver
SIGKILLs a randomly chosen process at a random moment, then releases the dead runs, re-launches what
did not finish, and audits the table and the Dagster instance after every cycle.

One campaign (`run_campaign`) works on `SHARDS` small shards served over loopback HTTP, one Lance
table (local disk, or moto's S3 server on loopback), one Dagster instance and one long-lived Ray
head that every run joins. A cycle:

1. launches one run over a window of 4 shards (`--partition-range`, one run for all of them) or two
   runs over its halves at once, each `*depth_maps` (download, transcode, depth) or
   `raw_archives,transcoded_videos`, with `force` drawn per asset so shards are really redone;
2. SIGKILLs 3-6 victims at random moments: a run's process group, a step process (runs on the
   multiprocess executor), a busy Ray worker, or the Ray head (restarted at once); on local storage a
   quarter of the kills wait from their moment for a data file to be written and kill the run right
   after it (a fragment written, its commit not yet made);
3. waits for the runs to end (releasing dead runs every `RELEASE_EVERY_S` meanwhile, as an operator's
   watcher would, so a killed run's `depth` pool slot does not hold up the others), runs
   `kinetics release-dead-runs --yes`, and re-launches every shard not
   complete until all are: the first re-run takes the kills drawn for the cycle that found every
   run already ended, the next `MAX_RECOVERIES` re-runs have no kills;
4. audits: no duplicate `video_id`; every shard complete (rows = the archive's video members) with
   depth on every ok row; the ok rows of shards outside the window byte-identical (sha256 of video
   and depth); after `cleanup_old_versions` no data file that no version references; no run left
   in flight and no `depth` pool slot held.

A reader thread polls the latest version the whole time: it must never see a video twice, part of
a shard, part of a shard's depth, a shard that disappears, or the version going back.

The random draws come from one seed, so a failing campaign is replayed with it (timings differ, so
a replay hits nearby, not identical, moments). Every wait is bounded; the campaign stops after its
kill count or its wall-clock limit, whichever comes first.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from kinetics_assets.table import cleanup_old_versions, open_table, table_exists
from tests.harness.commit_soak import moto_server, twice_and_by_shard
from tests.harness.http_server import FaultyFileServer
from tests.harness.ray_head import running_ray_head
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SHARDS = 6  # part_0 .. part_5; a cycle works on 4 adjacent ones, so 2 are left alone
WINDOW = 4
CLIPS_PER_SHARD = 2
CLIP_SECONDS = 0.6
MAX_RECOVERIES = 3
KILLS_PER_CYCLE = (3, 6)  # drawn per cycle; those that find no run alive go to the first re-run
RELEASE_EVERY_S = 10.0  # while runs go on, dead runs are released this often
RUN_TIMEOUT_S = 600.0  # a run takes ~4 min on 2 busy cores; one still going after this hung
VICTIMS = ("run", "step", "ray_worker", "ray_head")
VICTIM_WEIGHTS = (0.35, 0.15, 0.35, 0.15)
IN_FLIGHT = ("STARTING", "STARTED", "CANCELING")


def shard_name(i: int) -> str:
    return f"part_{i}"


# --------------------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat and stat[2] == pgid and stat[0] != "Z":
            members.append(pid)
    return members


def _sigkill(pid: int, group: bool = False) -> bool:
    """SIGKILL a process (or the process group it leads); False when it was already gone."""
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


class RayCluster:
    """The long-lived Ray head the runs join; `kill()` SIGKILLs its whole process group and
    `restart()` starts a fresh one (a new port: runs launched afterwards join that)."""

    def __init__(self, num_cpus: int = 2):
        self.num_cpus = num_cpus
        self._stack: contextlib.ExitStack | None = None
        self.head = None
        self.restarts = 0

    def start(self) -> None:
        """A fresh head (`running_ray_head` tries again when a busy machine misses Ray's start-up time)."""
        self._stack = contextlib.ExitStack()
        try:
            self.head = self._stack.enter_context(running_ray_head(num_cpus=self.num_cpus))
        except BaseException:
            self._stack.close()
            self._stack = None
            raise

    def stop(self) -> None:
        if self._stack is not None:
            workers = [pid for pid, _ in self._workers()]
            self._stack.close()  # the head's process group
            for pid in workers:  # workers run in sessions of their own
                _sigkill(pid)
            self._stack = None

    def kill(self) -> bool:
        workers = [pid for pid, _ in self._workers()]
        killed = _sigkill(self.head.pgid, group=True)
        for pid in workers:
            _sigkill(pid)
        return killed

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def _workers(self) -> list[tuple[int, str]]:
        """(pid, title) of the raylet's worker processes (each in a session of its own)."""
        raylets = [pid for pid in group_members(self.head.pgid) if "/raylet/raylet " in _cmdline(pid)]
        workers = []
        for pid in _pids():
            stat = _proc_stat(pid)
            if stat and stat[1] in raylets and stat[0] != "Z":
                title = _cmdline(pid)
                if title.startswith("ray::") and not title.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
                    workers.append((pid, title))
        return workers

    def workers(self) -> list[int]:
        """Ray worker processes; the busy ones (running a task or an actor) when there are any."""
        workers = self._workers()
        busy = [pid for pid, title in workers if not title.startswith("ray::IDLE")]
        return busy or [pid for pid, _ in workers]


# ------------------------------------------------------------------------------------------ runs

_MARKERS = (  # (pattern in a run's log, phase); the last one found is where the run is
    (re.compile(r'Started execution of step "raw_archives"'), "download"),
    (re.compile(r"fetching \d+ shard"), "download"),
    (re.compile(r'Started execution of step "transcoded_videos"'), "transcode"),
    (re.compile(r"transcoding \d+ shard"), "transcode"),
    (re.compile(r"shard \S+: (\d+) clips transcoded"), "transcode"),
    (re.compile(r"shard \S+: committed \d+ clips"), "transcode"),
    (re.compile(r"already committed from this input"), "transcode"),
    (re.compile(r"depth for \d+ ok videos"), "depth"),
    (re.compile(r"depth for \d+ shard"), "depth"),
    (re.compile(r"shard \S+: depth done for (\d+)/(\d+)"), "depth"),
    (re.compile(r'Started execution of step "depth_maps"'), "depth"),
    (re.compile(r"Step blocked by limit for pool depth"), "depth_pool_wait"),
    (re.compile(r"RUN_SUCCESS|RUN_FAILURE"), "run_ended"),
)


def phase_of(log: str, clips_per_shard: int = CLIPS_PER_SHARD) -> str:
    """Where a run is, from its log: startup, download, transcode, commit (a shard's clips all
    transcoded, its fragments being written and committed), depth, depth_pool_wait (its depth
    step waiting for the `depth` pool), depth_commit, run_ended (the process still exiting)."""
    best, phase = -1, "startup"
    for pattern, name in _MARKERS:
        for match in pattern.finditer(log):
            if match.start() <= best:
                continue
            best, phase = match.start(), name
            if name == "transcode" and match.groups() and int(match.group(1)) >= clips_per_shard:
                phase = "commit"
            elif name == "depth" and len(match.groups()) == 2 and match.group(1) == match.group(2):
                phase = "depth_commit"
    return phase


@dataclass
class Run:
    name: str
    shards: list[str]
    select: str
    executor: str
    force_transcode: bool
    force_depth: bool
    log_path: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    ended: float = 0.0
    timed_out: bool = False
    rerun: bool = False  # launched to recover a cycle's shards
    killed: bool = False  # its process group was SIGKILLed (it may not have been reaped yet)

    @property
    def kind(self) -> str:
        return "multi_partition" if len(self.shards) > 1 else "single_partition"

    def alive(self) -> bool:
        return self.proc is not None and not self.killed and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def step_processes(self) -> list[int]:
        """Step processes of a multiprocess run: the run's children that multiprocessing spawned
        (not its compute-log tailers or Dagster's orphan watcher)."""
        if not self.alive():
            return []
        return [
            pid
            for pid in group_members(self.proc.pid)
            if pid != self.proc.pid
            and (_proc_stat(pid) or ("", 0, 0))[1] == self.proc.pid
            and "multiprocessing.spawn" in _cmdline(pid)
        ]


def run_config(select: str, force_transcode: bool, force_depth: bool) -> dict:
    ops = {}
    if "transcoded_videos" in select or select.startswith("*"):
        ops["transcoded_videos"] = {"config": {"preset": "ultrafast", "force": force_transcode}}
    if "depth_maps" in select:
        ops["depth_maps"] = {"config": {"sampling": "count=2", "force": force_depth}}
    return {"ops": ops}


def launch(run: Run, env: dict[str, str]) -> None:
    shards = run.shards
    target = ["--partition", shards[0]] if len(shards) == 1 else ["--partition-range", f"{shards[0]}...{shards[-1]}"]
    command = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "kinetics_assets.definitions",
        "--select",
        run.select,
        *target,
        "--config-json",
        json.dumps(run_config(run.select, run.force_transcode, run.force_depth)),
    ]
    run_env = {**env, "KINETICS_PARTITIONS_PER_RUN": "all", "KINETICS_RUN_EXECUTOR": run.executor}
    with run.log_path.open("w") as log:
        run.proc = subprocess.Popen(
            command, cwd=REPO, env=run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    run.started = time.monotonic()


def wait_all(runs: list[Run], timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Wait for every run; a run still going after `timeout_s` is killed and marked timed out."""
    for run in runs:
        if run.proc is None:
            continue
        remaining = max(1.0, run.started + timeout_s - time.monotonic())
        try:
            run.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            run.timed_out = True
        finally:
            _sigkill(run.proc.pid, group=True)  # what a run leaves behind (a step process) goes with it
            run.proc.wait()
            run.ended = run.ended or time.monotonic()


# ----------------------------------------------------------------------------------------- table


def _fingerprints(uri: str, options: dict | None) -> dict[str, tuple[str, str | None]]:
    """video_id -> (sha256 of the video blob, sha256 of the depth video) for every ok row."""
    ds = open_table(uri, options)
    columns = ["video_id"] + (["depth"] if "depth" in ds.schema.names else [])
    table = ds.to_table(columns=columns, filter="status = 'ok'", with_row_id=True).to_pylist()
    if not table:
        return {}
    blobs = ds.take_blobs("video", ids=[r["_rowid"] for r in table])
    prints = {}
    for row, blob in zip(table, blobs, strict=True):
        with blob:
            video = hashlib.sha256(blob.read()).hexdigest()
        depth = row.get("depth")
        prints[row["video_id"]] = (video, hashlib.sha256(depth).hexdigest() if depth is not None else None)
    return prints


def _rows(uri: str, options: dict | None) -> list[dict]:
    ds = open_table(uri, options)
    columns = ["video_id", "shard", "status"] + (["depth_status"] if "depth_status" in ds.schema.names else [])
    return ds.to_table(columns=columns).to_pylist()


def shard_problems(rows: list[dict], expected: dict[str, set[str]], where: str) -> list[str]:
    """A video twice, or a shard present but not whole (its ids not exactly its archive's), or a
    shard's depth present on only part of its ok rows."""
    problems = []
    twice, by_shard = twice_and_by_shard(rows)
    if twice:
        problems.append(f"{where}: {twice} more than once")
    for shard, shard_rows in sorted(by_shard.items()):
        ids = {r["video_id"] for r in shard_rows}
        if ids != expected.get(shard):
            problems.append(
                f"{where}: shard {shard} holds {len(shard_rows)} rows, not its {len(expected.get(shard, ()))}"
            )
        ok = [r for r in shard_rows if r["status"] == "ok"]
        with_depth = [r for r in ok if r.get("depth_status") is not None]
        if with_depth and len(with_depth) != len(ok):
            problems.append(f"{where}: shard {shard} has depth on {len(with_depth)} of its {len(ok)} ok rows")
    return problems


def complete_shards(rows: list[dict], expected: dict[str, set[str]]) -> set[str]:
    """Shards whose rows are exactly their archive's members, with depth on every ok row."""
    done = set()
    for shard, ids in expected.items():
        mine = [r for r in rows if r["shard"] == shard]
        if (
            {r["video_id"] for r in mine} == ids
            and len(mine) == len(ids)
            and all(r.get("depth_status") is not None for r in mine if r["status"] == "ok")
        ):
            done.add(shard)
    return done


class TableReader(threading.Thread):
    """Polls the latest version for the whole campaign and records what a reader must never see."""

    def __init__(self, uri: str, options: dict | None, expected: dict[str, set[str]], interval_s: float = 0.3):
        super().__init__(daemon=True, name="table-reader")
        self.uri, self.options, self.expected, self.interval_s = uri, options, expected, interval_s
        self.stop_event = threading.Event()
        self.reads = 0
        self.errors: list[str] = []
        self.violations: list[str] = []
        self._version = 0
        self._shard_rows: dict[str, int] = {}
        self._total = 0

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.read_once()
            except Exception as exc:  # noqa: BLE001 - a reader error is recorded, never fatal
                if len(self.errors) < 20:
                    self.errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")

    def read_once(self) -> None:
        if not table_exists(self.uri, self.options):
            return
        ds = open_table(self.uri, self.options)
        version = ds.version
        columns = ["video_id", "shard", "status"] + (["depth_status"] if "depth_status" in ds.schema.names else [])
        rows = ds.to_table(columns=columns).to_pylist()
        self.reads += 1
        where = f"reader at version {version}"
        if version < self._version:
            self.violations.append(f"{where}: the version went back from {self._version}")
        self.violations += shard_problems(rows, self.expected, where)
        per_shard = collections.Counter(r["shard"] for r in rows)
        for shard, n in self._shard_rows.items():
            if n and not per_shard.get(shard):
                self.violations.append(f"{where}: shard {shard} disappeared ({n} rows before)")
        if len(rows) < self._total:
            self.violations.append(f"{where}: {len(rows)} rows, fewer than the {self._total} seen before")
        self._version, self._shard_rows, self._total = version, dict(per_shard), len(rows)


def _data_files(uri: str, options: dict | None) -> set[str]:
    """Names of the files under the table's data/ folder."""
    if uri.startswith("s3://"):
        import boto3

        bucket, _, prefix = uri[5:].partition("/")
        client = boto3.client(
            "s3",
            endpoint_url=options["aws_endpoint"],
            aws_access_key_id=options["aws_access_key_id"],
            aws_secret_access_key=options["aws_secret_access_key"],
            region_name=options["aws_region"],
        )
        names = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/data/"):
            names |= {obj["Key"].rsplit("/", 1)[-1] for obj in page.get("Contents", [])}
        return names
    folder = Path(uri) / "data"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def unreferenced_files(uri: str, options: dict | None) -> list[str]:
    """Data files that no version of the table references."""
    referenced = set()
    for entry in open_table(uri, options).versions():
        ds = open_table(uri, options, version=entry["version"])
        for fragment in ds.get_fragments():
            referenced |= {f.path.rsplit("/", 1)[-1] for f in fragment.data_files()}
    return sorted(_data_files(uri, options) - referenced)


# ---------------------------------------------------------------------------------------- Dagster


def dagster_leftovers(home: Path) -> list[str]:
    """Runs still in flight and `depth` pool slots still held, from the instance."""
    import dagster as dg

    problems = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = [dg.DagsterRunStatus(s) for s in IN_FLIGHT]
        for record in instance.get_run_records(filters=dg.RunsFilter(statuses=statuses)):
            run = record.dagster_run
            partition = run.tags.get("dagster/partition", run.tags.get("dagster/asset_partition_range_start", "?"))
            problems.append(f"run {run.run_id} ({partition}) still {run.status.value}")
        storage = instance.event_log_storage
        if storage.supports_global_concurrency_limits:
            claimed = storage.get_concurrency_info("depth").claimed_slots
            problems += [f"depth pool slot held by run {slot.run_id}" for slot in claimed]
    return problems


# --------------------------------------------------------------------------------------- campaign


@dataclass(frozen=True)
class KillDraw:
    at: float  # seconds after the runs started
    victim: str
    pick: float  # which of the candidates, as a fraction of their count
    after_write: bool  # wait for a data file to be written, then kill the run


@dataclass
class Summary:
    storage: str
    seed: int
    kills_target: int
    shards: int = SHARDS
    clips_per_shard: int = CLIPS_PER_SHARD
    cycles: int = 0
    kills: int = 0
    kills_by_victim: dict[str, int] = field(default_factory=dict)
    kills_by_phase: dict[str, int] = field(default_factory=dict)
    kills_by_run_kind: dict[str, int] = field(default_factory=dict)
    kills_after_write: int = 0  # a run killed just after a data file was written (local storage)
    kills_in_reruns: int = 0  # kills that landed in a re-run (draws whose cycle's runs had ended)
    missed_kills: int = 0  # drawn, but every run (and the re-run) had already ended
    runs: int = 0
    runs_failed: int = 0
    runs_timed_out: int = 0
    dead_runs_released: int = 0  # by `kinetics release-dead-runs --yes` after a cycle's runs ended
    dead_runs_released_while_waiting: int = 0  # by the driver while other runs were still going
    ray_head_restarts: int = 0
    reruns: int = 0
    recoveries: int = 0  # cycles with kills after which every shard was complete again
    reader_reads: int = 0
    reader_errors: list[str] = field(default_factory=list)
    versions_cleaned: int = 0
    orphan_files_removed: int = 0
    violations: list[str] = field(default_factory=list)
    stopped_by: str = ""
    wall_s: float = 0.0

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def as_dict(self) -> dict:
        return asdict(self)


class Campaign:
    def __init__(self, work: Path, storage: str, seed: int, *, kills: int, max_wall_s: float, log=print):
        self.work, self.storage, self.seed = work, storage, seed
        self.rng = random.Random(seed)
        self.kills_target, self.max_wall_s, self.log = kills, max_wall_s, log
        self.summary = Summary(storage=storage, seed=seed, kills_target=kills)
        self.home = work / "dagster_home"
        self.run_logs = work / "runs"
        self.expected: dict[str, set[str]] = {}
        self.est_run_s = 40.0  # how long a run takes; kill moments are drawn within it
        self.run_counter = 0
        self.launched: list[Run] = []  # those still going are killed on the way out
        self.started = 0.0

    # -- setup
    def _build(self, served: Path) -> None:
        for i in range(SHARDS):
            spec = build_shard(
                served,
                shard_name(i),
                n_clips=CLIPS_PER_SHARD,
                with_defects=False,
                clip_seconds=CLIP_SECONDS,
                seed=self.seed * 100 + i,
            )
            self.expected[spec.name] = set(spec.video_ids)

    def _env(self, server: FaultyFileServer, table: tuple[str, dict | None]) -> dict[str, str]:
        uri, options = table
        manifest = self.work / "manifest.txt"
        manifest.write_text("".join(server.url(f"{shard_name(i)}.tar.gz") + "\n" for i in range(SHARDS)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_", "RAY_", "AWS_"))}
        env.update(
            DAGSTER_HOME=str(self.home),
            KINETICS_MANIFEST=str(manifest),
            KINETICS_LANCE_URI=uri,
            KINETICS_DEPTH_MODEL_PATH=str(save_tiny_depth_model(self.work / "tiny-depth")),
            HF_HUB_OFFLINE="1",
            # A run whose Ray head was killed gives up after this instead of Ray's 60 s.
            RAY_gcs_rpc_server_reconnect_timeout_s="10",
        )
        if options:
            env.update(
                KINETICS_DATA_ROOT=uri.rsplit("/lance/", 1)[0] + "/data",
                KINETICS_STORAGE_OPTIONS=json.dumps(options),
                KINETICS_CACHE_DIR=str(self.work / "cache"),
            )
        else:
            env.update(KINETICS_DATA_ROOT=str(self.work / "data"))
        return env

    def run(self) -> Summary:
        import shutil

        self.started = time.monotonic()
        self.home.mkdir(parents=True)
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", self.home / "dagster.yaml")
        self.run_logs.mkdir()
        served = self.work / "served"
        self._build(served)
        with contextlib.ExitStack() as stack:
            if self.storage == "s3":
                bucket, options = stack.enter_context(moto_server(self.work))
                self.table = (f"s3://{bucket}/lance/videos.lance", options)
            else:
                self.table = (str(self.work / "data" / "lance" / "videos.lance"), None)
            server = stack.enter_context(FaultyFileServer(served))
            self.base_env = self._env(server, self.table)
            self.ray = RayCluster()
            self.ray.start()
            stack.callback(self.ray.stop)
            stack.callback(self._kill_live_runs)
            self.reader = TableReader(*self.table, self.expected)
            self.reader.start()
            stack.callback(self.reader.join, 30)
            stack.callback(self.reader.stop_event.set)
            try:
                self._campaign()
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM (bench/soak_crash.py): report what ran
                self.summary.stopped_by = "interrupted (the cycle in progress is not counted as audited)"
            finally:
                s = self.summary
                s.reader_reads, s.reader_errors = self.reader.reads, self.reader.errors
                s.ray_head_restarts = self.ray.restarts
        s = self.summary
        s.violations += self.reader.violations
        s.wall_s = round(time.monotonic() - self.started, 1)
        return s

    def env(self) -> dict[str, str]:
        return {**self.base_env, **{k: v for k, v in self.ray.head.client_env.items() if k.startswith("RAY_")}}

    def _new_run(self, shards: list[str], select: str, executor: str, force_transcode: bool, force_depth: bool) -> Run:
        self.run_counter += 1
        name = f"r{self.run_counter:04d}"
        return Run(name, shards, select, executor, force_transcode, force_depth, self.run_logs / f"{name}.log")

    def _start(self, runs: list[Run]) -> None:
        env = self.env()
        for run in runs:
            launch(run, env)
            self.launched.append(run)
        self.summary.runs += len(runs)

    def _kill_live_runs(self) -> None:
        """On the way out (an error, Ctrl-C): runs still going, by their process groups."""
        for run in self.launched:
            if run.alive():
                _sigkill(run.proc.pid, group=True)
                run.proc.wait()

    def _finish(self, runs: list[Run]) -> None:
        """Wait for the runs, releasing dead runs meanwhile: a killed run holding the `depth` pool
        slot would otherwise keep the others' depth steps waiting until the run timeout."""
        deadline = max(r.started for r in runs) + RUN_TIMEOUT_S
        next_release = time.monotonic() + RELEASE_EVERY_S
        while any(r.alive() for r in runs) and time.monotonic() < deadline:
            time.sleep(0.2)
            if time.monotonic() >= next_release and any(r.alive() for r in runs):
                self._release_dead_runs_while_waiting()
                next_release = time.monotonic() + RELEASE_EVERY_S
        wait_all(runs)
        for run in runs:
            if run.timed_out:
                self.summary.runs_timed_out += 1
                self.log(f"  {run.name} timed out after {RUN_TIMEOUT_S:.0f} s: {run.log()[-1500:]}")
            elif run.proc.returncode != 0:
                self.summary.runs_failed += 1

    # -- the loop
    def _campaign(self) -> None:
        s = self.summary
        # Cycle 0: every shard materialized once, no kills (the state the cycles start from).
        first = self._new_run([shard_name(i) for i in range(SHARDS)], "*depth_maps", "in_process", False, False)
        self._start([first])
        self._finish([first])
        if first.proc.returncode != 0:
            s.violations.append(f"the first run failed:\n{first.log()[-3000:]}")
            s.stopped_by = "first run failed"
            return
        self.est_run_s = max(10.0, first.ended - first.started)
        s.violations += self._audit(set(), {}, "cycle 0")
        self.log(f"cycle 0: every shard materialized in {self.est_run_s:.0f} s; {len(s.violations)} violation(s)")
        while s.kills < self.kills_target:
            # A cycle takes about two runs (the killed ones, then the re-run): once a kill landed (or
            # after 3 cycles without one), none is started that would end past the limit.
            if (s.kills or s.cycles >= 3) and time.monotonic() - self.started + 2 * self.est_run_s > self.max_wall_s:
                s.stopped_by = f"wall-clock limit ({self.max_wall_s:.0f} s)"
                return
            s.cycles += 1
            found = self._cycle(s.cycles)
            s.violations += found
            if found:
                self.log(f"cycle {s.cycles}: {len(found)} violation(s): {found[:5]}")
        s.stopped_by = f"{s.kills} kills"

    def _plan(self) -> list[Run]:
        rng = self.rng
        start = rng.randrange(SHARDS - WINDOW + 1)
        window = [shard_name(i) for i in range(start, start + WINDOW)]
        parts = [window] if rng.random() < 0.5 else [window[: WINDOW // 2], window[WINDOW // 2 :]]
        runs = []
        for shards in parts:
            select = "*depth_maps" if rng.random() < 0.8 else "raw_archives,transcoded_videos"
            executor = "multiprocess" if rng.random() < 0.25 else "in_process"
            force_transcode = rng.random() < 0.6
            force_depth = rng.random() < 0.7
            runs.append(self._new_run(shards, select, executor, force_transcode, force_depth))
        return runs

    def _cycle(self, n: int) -> list[str]:
        s = self.summary
        uri, options = self.table
        kills_before = s.kills
        before = _fingerprints(uri, options)
        runs = self._plan()
        window = sorted({shard for run in runs for shard in run.shards})
        draws = self._draw_kills(self.rng.randint(*KILLS_PER_CYCLE))
        self._start(runs)
        kills = self._kill_during(runs, draws)
        self._finish(runs)
        done = [r for r in runs if r.proc.returncode == 0 and not r.timed_out]
        if done:
            self.est_run_s = 0.7 * self.est_run_s + 0.3 * max(r.ended - r.started for r in done)
        described = [
            (
                r.name,
                f"{r.shards[0]}..{r.shards[-1]}",
                r.select,
                r.executor,
                "T" if r.force_transcode else "-",
                "D" if r.force_depth else "-",
                r.proc.returncode,
            )
            for r in runs
        ]
        self.log(f"cycle {n}: runs {described} kills {[k for k in kills if k]}")
        # Draws whose runs had all ended go to the first re-run (a retry crashes too).
        s.missed_kills += kills.count(None)
        problems = self._recover(n, draws[len(kills) :])
        if s.kills > kills_before and not problems:
            s.recoveries += 1
        unchanged = {shard_name(i) for i in range(SHARDS)} - set(window)
        return problems + self._audit(unchanged, before, f"cycle {n}")

    def _draw_kills(self, count: int) -> list[KillDraw]:
        """`count` kills at moments within a run's expected duration. On local storage a quarter of
        them wait, from their moment on, for the run to write a data file and strike right after:
        a fragment written and not yet committed (a shard's last clip, a depth write)."""
        rng = self.rng
        draws = []
        for at in sorted(rng.uniform(1.0, self.est_run_s) for _ in range(count)):
            victim, pick = rng.choices(VICTIMS, VICTIM_WEIGHTS)[0], rng.random()
            after_write = self.storage == "local" and rng.random() < 0.25
            draws.append(KillDraw(at, "run" if after_write else victim, pick, after_write))
        return draws

    def _kill_during(self, runs: list[Run], draws: list[KillDraw]) -> list[str | None]:
        """Each draw at its moment after the runs started; stops at the first draw that finds
        every run ended (the rest are left for the caller)."""
        t0 = time.monotonic()
        kills = []
        for draw in draws:
            while time.monotonic() - t0 < draw.at and any(r.alive() for r in runs):
                time.sleep(0.1)
            if draw.after_write:
                self._wait_for_write(runs)
            if not any(r.alive() for r in runs):
                break
            kills.append(self._kill(draw.victim, draw.pick, runs, after_write=draw.after_write))
        return kills

    def _wait_for_write(self, runs: list[Run]) -> None:
        """Until a new file appears in the table's data folder (or every run ended)."""
        folder = Path(self.table[0]) / "data"
        seen = {p.name for p in folder.iterdir()} if folder.exists() else set()
        while any(r.alive() for r in runs):
            if folder.exists() and {p.name for p in folder.iterdir()} - seen:
                return
            time.sleep(0.01)

    def _kill(self, victim: str, pick: float, runs: list[Run], after_write: bool = False) -> str | None:
        """SIGKILL one process of the drawn kind (another kind when none is there); None when
        every run had already ended."""
        s = self.summary
        alive = [r for r in runs if r.alive()]
        if not alive:
            return None
        order = [victim] + [v for v in VICTIMS if v != victim]
        for kind in order:
            target = alive[int(pick * len(alive))]
            phase = phase_of(target.log())
            if kind == "run":
                killed = target.killed = _sigkill(target.proc.pid, group=True)
            elif kind == "step":
                steps = target.step_processes()
                killed = bool(steps) and _sigkill(steps[int(pick * len(steps))])
            elif kind == "ray_worker":
                workers = self.ray.workers()
                killed = bool(workers) and _sigkill(workers[int(pick * len(workers))])
            else:
                killed = self.ray.kill()
                if killed:
                    self.ray.restart()
            if killed:
                s.kills += 1
                s.count(s.kills_by_victim, kind)
                s.count(s.kills_by_phase, phase)
                s.count(s.kills_by_run_kind, target.kind)
                s.kills_after_write += after_write
                s.kills_in_reruns += target.rerun
                where = " just after a data file was written" if after_write else ""
                self.log(f"  kill {s.kills}: {kind} during {phase}{where} ({target.name}, {target.kind})")
                return f"{kind}@{phase}"
        return None

    def _release_dead_runs_while_waiting(self) -> None:
        """What `kinetics release-dead-runs --yes` does, from the driver (as an operator's watcher
        would), while other runs are still going."""
        import dagster as dg

        from kinetics_assets.ops.dead_runs import find_dead_runs, release_run

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            for dead in find_dead_runs(instance):
                release_run(instance, dead.run_id, "its processes were killed by the crash soak")
                self.summary.dead_runs_released_while_waiting += 1
                self.log(f"  released dead run {dead.run_id} ({dead.partition}) while the others wait")

    def _release_dead_runs(self) -> None:
        out = subprocess.run(
            [str(BIN / "kinetics"), "release-dead-runs", "--yes"],
            cwd=REPO,
            env=self.env(),
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            self.summary.violations.append(
                f"kinetics release-dead-runs failed ({out.returncode}): {out.stderr[-2000:]}"
            )
        released = re.search(r"Released (\d+) run", out.stdout)
        self.summary.dead_runs_released += int(released.group(1)) if released else 0

    def _recover(self, n: int, draws: list[KillDraw]) -> list[str]:
        """Release dead runs, then re-launch whatever is not complete: the first re-run takes the
        cycle's kills that found no run alive, later ones run without kills."""
        uri, options = self.table
        for attempt in range(MAX_RECOVERIES + 1 + bool(draws)):
            self._release_dead_runs()
            missing = sorted(set(self.expected) - complete_shards(_rows(uri, options), self.expected))
            if not missing:
                if attempt == 0:
                    self.summary.missed_kills += len(draws)  # nothing to re-run, so nothing to kill
                return []
            if attempt == MAX_RECOVERIES + bool(draws):
                break
            first, last = min(missing), max(missing)
            span = [shard_name(i) for i in range(int(first[5:]), int(last[5:]) + 1)]
            rerun = self._new_run(span, "*depth_maps", "in_process", False, False)
            rerun.rerun = True
            self.summary.reruns += 1
            self._start([rerun])
            if attempt == 0 and draws:
                tried = self._kill_during([rerun], draws)
                self.summary.missed_kills += len(draws) - len(tried) + tried.count(None)
            self._finish([rerun])
            if rerun.proc.returncode != 0:
                self.log(f"  re-run {rerun.name} of {span} failed: {rerun.log()[-1500:]}")
        return [f"cycle {n}: shards {missing} still not complete after {MAX_RECOVERIES} re-runs without kills"]

    def _audit(self, unchanged: set[str], before: dict, where: str) -> list[str]:
        uri, options = self.table
        rows = _rows(uri, options)
        problems = shard_problems(rows, self.expected, where)
        missing = sorted(set(self.expected) - complete_shards(rows, self.expected))
        if missing:
            problems.append(f"{where}: shards {missing} not complete")
        after = _fingerprints(uri, options)
        for row in rows:
            changed = before.get(row["video_id"]) != after.get(row["video_id"])
            if row["shard"] in unchanged and row["status"] == "ok" and changed:
                problems.append(f"{where}: ok row {row['video_id']} of {row['shard']} (not re-run) changed")
        result = cleanup_old_versions(uri, options, older_than=timedelta(0), delete_unverified=True)
        self.summary.versions_cleaned += result.versions_removed
        self.summary.orphan_files_removed += result.data_files_removed
        orphans = unreferenced_files(uri, options)
        if orphans:
            problems.append(
                f"{where}: after cleanup_old_versions {len(orphans)} data file(s) no version references: {orphans[:3]}"
            )
        problems += [f"{where}: {p}" for p in dagster_leftovers(self.home)]
        return problems


def run_campaign(
    storage: str, seed: int, kills: int, max_wall_s: float, *, work: Path | None = None, log=print
) -> Summary:
    """One campaign; `work` (a fresh temp folder by default, removed afterwards) keeps the logs."""
    if storage not in ("local", "s3"):
        raise ValueError(f"storage must be 'local' or 's3', not {storage!r}")
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crash-soak-")))
        return Campaign(Path(work), storage, seed, kills=kills, max_wall_s=max_wall_s, log=log).run()
