"""The study store: Optuna RDB storage shared by every worker of a search.

Layout: **one Optuna study per phase**, plus a root study that holds no trials.

- root study `NAME`: user attrs `config` (the search settings; a worker with other settings is refused),
  `winner.<component>` (each greedy stage's fixed choice, written by whichever worker finished the stage)
  and `final_design` (the design the strategy ends with);
- greedy stage study `NAME.stage<k>.<component>`: one trial per candidate design (user attr `candidate`);
- `NAME.joint` (one trial per planned slot: warm starts, then slots the sampler fills when claimed),
  `NAME.supernet` (the one-shot search's one supernet training), `NAME.final` (one training of the final
  design: its retrained score and the compute ledger's reference).

Why one study per stage rather than one study with stage attributes: a pruner (successive halving)
compares a trial with the trials of its own study, and designs of different stages must not compete
(stage 1 trials are random over everything, stage 4 trials share three fixed components); trial numbers
and Optuna's own tools (dashboard, `trials_dataframe`) then show one stage's candidates; and "is the
stage complete" is a question about one study's trials.

Concurrency (SQLite file by default; any RDB URL, e.g. postgresql://, for several machines):

- **enqueue once**: `optuna.create_study(load_if_exists=False)` is atomic on the study name (a unique
  column), so exactly one process creates a stage study, and only that process enqueues the stage's N
  candidates (deterministic: seeded from the space, the seed and the earlier winners). Joiners wait.
- **pull**: a worker pops a WAITING trial by flipping it to RUNNING (`set_trial_state_values` is atomic in
  RDB storage: it returns False to every process but one) - Optuna's own queue mechanics, but the worker
  never calls `ask()` when the queue is empty, so no unplanned trial is ever created.
- **crash recovery**: RDB heartbeats (`heartbeat_interval`, `grace_period`). A trial whose worker was
  killed stops beating; the next `fail_stale_trials` (any worker, every poll) marks it FAIL and
  `RetryHeartbeatStaleTrialCallback` (RetryFailedTrialCallback's current name) re-enqueues it with the
  same params and user attrs. Finished trials are never redone: a restarted search reads them.
- **exactly once**: a candidate counts once: statistics take, per candidate, the lowest-numbered finished
  (COMPLETE/PRUNED) trial; FAIL trials (killed attempts) never count. A popped trial whose candidate
  already has a live or finished lower-numbered trial (possible only after a repair, below) marks itself
  FAIL with `duplicate_of` instead of training.
- **repair**: a candidate with no live (WAITING/RUNNING) and no final trial for `repair_after` seconds
  (its creator died mid-enqueue, or a worker died between failing a stale trial and re-enqueueing it) is
  enqueued again; the duplicate rule above makes a racing repair harmless.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from lamina.errors import LaminaError

log = logging.getLogger("lamina.search")

FINAL = (TrialState.COMPLETE, TrialState.PRUNED)
LIVE = (TrialState.WAITING, TrialState.RUNNING)
MAX_RETRY = 3  # a candidate whose worker dies this many times in a row is given up (recorded as failed)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(storage: str | None, output: Path) -> str:
    """A URL for RDBStorage: None -> sqlite file in the output folder; a bare path -> sqlite file. Nothing is
    created here: `open_storage` makes the folder of a SQLite file when it opens it."""
    if not storage:
        return f"sqlite:///{(output / 'search.db').resolve()}"
    if "://" not in storage:
        path = Path(storage).expanduser().resolve()
        if path.is_dir():
            raise LaminaError(f"--storage {storage}: is a folder; give a database file or an RDB URL")
        storage = f"sqlite:///{path}"
    elif storage.startswith("sqlite") and sqlite_path(storage) is None:
        raise LaminaError(f"--storage {storage}: an in-memory SQLite database dies with the process (no resume, no "
                          "second worker, nothing for `lamina report`); give a database file or an RDB URL")
    path = sqlite_path(storage)
    if path is not None and not path.parent.is_dir():  # a typo must not create folders anywhere on the disk
        raise LaminaError(f"--storage {redact(storage)}: the folder {path.parent} does not exist; create it first "
                          "or give another database file")
    return storage


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):])


def check_sqlite_file(url: str) -> None:
    """An existing file given as a SQLite store must be an empty or Optuna SQLite database: Optuna would add its
    tables to any other database (someone's application data). Read-only checks: nothing is written."""
    path = sqlite_path(url)
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise LaminaError(f"--storage {path}: this file is not a SQLite database; give a new file name, "
                              "a search database, or an RDB URL")
    tables = _sqlite_tables(path)
    if tables and "studies" not in tables:
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise LaminaError(f"--storage {path}: this SQLite database holds other tables ({shown}), not an Optuna "
                          "study store; give a new file name or a search database")


def _sqlite_tables(path: Path) -> set[str]:
    """Table names of a SQLite file, opened read-only and immutable (a plain read-only connection to a WAL
    database creates its -wal and -shm files: a refusal would leave them behind); empty when it cannot be
    read (Optuna then says why). Optuna creates all its tables in one transaction, so a table list read
    without the WAL either has 'studies' or is empty."""
    import sqlite3

    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, timeout=60)
        try:
            return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.Error as err:
        log.debug("reading the tables of %s: %s", path, err)
        return set()


def redact(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (for records and logs)."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        return f"{head}{sep}{user}:***@{tail.split('@', 1)[1]}"
    return url


def _sqlite_pragmas(connection, _record) -> None:
    """WAL journal: readers do not block the writer (workers poll while others write); synchronous=NORMAL:
    one fsync per checkpoint instead of per commit. A killed process loses nothing committed (only an
    OS crash or power cut can drop the last commits)."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    except Exception as err:  # e.g. locked while another process switches the journal: it stays usable
        log.debug("sqlite pragmas: %s", err)
    finally:
        cursor.close()


def open_storage(url: str, heartbeat: int = 10, grace: int | None = None, attempts: int = 6) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats and retry of stale trials. SQLite: waits up to 60 s for a lock, WAL.

    Several workers opening a new, empty database at the same moment all create Optuna's tables; on
    PostgreSQL the losers of that race get a unique-violation or "already exists" error (found by the
    three-worker test on a real server). Such an error is retried: by then the winner has created them."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    check_sqlite_file(url)
    if sqlite_path(url) is not None:
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: known, chosen
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=grace or 3 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY - 1),
                )
            break
        except (ImportError, ValueError) as err:
            raise LaminaError(f"cannot open study storage {redact(url)}: {str(err).splitlines()[0]}") from None
        except Exception as err:  # sqlalchemy's OperationalError & co: a bad URL, an unreachable server
            if _lost_creation_race(err) and attempt + 1 < attempts:
                log.debug("creating the study tables raced another worker (%s); opening again", type(err).__name__)
                time.sleep(0.2 * (attempt + 1))
                continue
            raise LaminaError(f"cannot open study storage {redact(url)}: {type(err).__name__}: "
                              f"{str(err).splitlines()[0]}") from None
    if url.startswith("sqlite"):
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # connections opened while creating the tables get the pragmas too
    return storage


def _lost_creation_race(err: Exception) -> bool:
    text = str(err).lower()
    return type(err).__name__ in ("IntegrityError", "ProgrammingError") and (
        "already exists" in text or "duplicate key" in text or "unique constraint" in text)


def _create_or_load(storage, name: str, direction: str = "maximize", pruner=None) -> tuple[optuna.Study, bool]:
    """(study, created): created is True in exactly one process (the study name is unique)."""
    try:
        return optuna.create_study(storage=storage, study_name=name, direction=direction, pruner=pruner), True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(storage=storage, study_name=name, pruner=pruner), False


def wait_for(fn, timeout: float, poll: float = 0.2, what: str = "a value"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise LaminaError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def open_root(storage, name: str, config: dict, timeout: float = 120) -> optuna.Study:
    """The root study; the creator records `config`, joiners must bring the same config."""
    root, created = _create_or_load(storage, name)
    if created:
        root.set_user_attr("config", config)
        return root
    stored = wait_for(lambda: optuna.load_study(storage=storage, study_name=name).user_attrs.get("config"),
                      timeout, what=f"study '{name}' to record its settings")
    if stored != config:
        diff = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        raise LaminaError(f"study '{name}' exists with other settings ({', '.join(diff)} differ); "
                          "use the same options to resume or join it, or another --study name")
    return root


def stored_config(storage, name: str) -> dict:
    try:
        root = optuna.load_study(storage=storage, study_name=name)
    except KeyError:
        raise LaminaError(f"no study named '{name}' in this storage") from None
    config = root.user_attrs.get("config")
    if config is None:
        raise LaminaError(f"study '{name}' is not a lamina search (no recorded settings)")
    return config


def stage_study_name(root: str, index: int, component: str) -> str:
    return f"{root}.stage{index}.{component}"


def phase_study_name(root: str, phase: str) -> str:
    """The study of a phase that is not a greedy stage: `joint`, `supernet`, `final`."""
    return f"{root}.{phase}"


@dataclass
class Candidate:
    index: int
    params: dict
    distributions: dict
    user_attrs: dict


def open_stage(storage, name: str, candidates_fn, stage_attrs: dict, pruner=None) -> tuple[optuna.Study, bool]:
    """Create-or-join a stage study; the creator enqueues `candidates_fn()` once, in candidate order."""
    study, created = _create_or_load(storage, name, pruner=pruner)
    if created:
        for key, value in stage_attrs.items():
            study.set_user_attr(key, value)
        for cand in candidates_fn():
            enqueue(study, cand)
    return study, created


def enqueue(study: optuna.Study, cand: Candidate, system_attrs: dict | None = None) -> None:
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=cand.params, distributions=cand.distributions,
        user_attrs={"candidate": cand.index, **cand.user_attrs}, system_attrs=system_attrs or {},
    ))


def categorical(params: dict, choices: dict[str, list]) -> dict:
    return {k: CategoricalDistribution(choices[k]) for k in params}


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            optuna.storages.fail_stale_trials(study)
        except Exception as err:  # a locked SQLite file or a dropped connection: try again next poll
            log.debug("fail_stale_trials: %s", err)


def pop_waiting(storage, study_id: int) -> int | None:
    """Atomically claim the lowest-numbered WAITING trial (RUNNING for us, for nobody else).

    The first heartbeat is recorded *before* the claim: Optuna never counts a RUNNING trial without a
    heartbeat row as stale, so a worker killed between claiming a trial and its first beat would leave
    that trial RUNNING forever. (A beat on a trial another worker claims first is harmless: only
    RUNNING trials are checked, and the claimer beats too.)"""
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            storage.record_heartbeat(trial._trial_id)
        except Exception as err:  # two workers inserting the first beat of one trial: a row exists anyway
            log.debug("heartbeat before claim: %s", err)
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class Heartbeat:
    """`with Heartbeat(storage, trial_id):` records a heartbeat every interval while the trial runs."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{trial_id}")

    def _beat(self):
        interval = self.storage.get_heartbeat_interval() or 60
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as err:  # locked SQLite: the next beat will do
                log.debug("heartbeat: %s", err)
            if self.stop.wait(interval):
                return

    def __enter__(self):
        self.storage.record_heartbeat(self.trial_id)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        return False


def _retries_left(trial) -> bool:
    return len(trial.system_attrs.get("retry_history", [])) + 1 < MAX_RETRY


def is_terminal_fail(trial) -> bool:
    """A FAIL that settles its candidate: training raised (`error`), or the retries are used up.
    A killed attempt with retries left is not terminal (its retry is, or will be, WAITING)."""
    if trial.state != TrialState.FAIL or "duplicate_of" in trial.user_attrs:
        return False
    return "error" in trial.user_attrs or not _retries_left(trial)


def duplicate_of(trials, trial) -> int | None:
    """The lower-numbered trial that already covers `trial`'s candidate, if any."""
    cand = trial.user_attrs.get("candidate")
    for other in trials:
        if other.number < trial.number and other.user_attrs.get("candidate") == cand and (
            other.state in LIVE or other.state in FINAL or is_terminal_fail(other)
        ):
            return other.number
    return None


@dataclass
class StageState:
    """Per candidate: the trial that counts (final or terminal fail), or what is still going on."""

    counted: dict[int, object] = field(default_factory=dict)
    live: set[int] = field(default_factory=set)
    orphans: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return not self.live and not self.orphans


def stage_state(trials, n: int) -> StageState:
    state = StageState()
    for c in range(n):
        mine = sorted((t for t in trials if t.user_attrs.get("candidate") == c), key=lambda t: t.number)
        final = [t for t in mine if t.state in FINAL]
        if final:
            state.counted[c] = final[0]
        elif any(t.state in LIVE for t in mine):
            state.live.add(c)
        elif any(is_terminal_fail(t) for t in mine):
            state.counted[c] = next(t for t in mine if is_terminal_fail(t))
        else:
            state.orphans.add(c)  # never enqueued, or killed with its retry not (yet) enqueued
    return state


def repair(study: optuna.Study, trials, cand: Candidate) -> None:
    """Enqueue an orphaned candidate again, carrying its retry history (so MAX_RETRY still holds)."""
    last = max((t for t in trials if t.user_attrs.get("candidate") == cand.index), key=lambda t: t.number, default=None)
    system = {}
    if last is not None:
        history = list(last.system_attrs.get("retry_history", [])) + [last.number]
        system = {"failed_trial": history[0], "retry_history": history}
    enqueue(study, cand, system)
