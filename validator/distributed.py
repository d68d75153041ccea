"""``validate --ray``: the image loop sharded over Ray actors, with outputs byte-identical to one machine.

Why this shape. The image list is cut into contiguous shards (``--ray-shard`` images); each actor loads the
dataset and every model *once* (from a path every worker can read: shared storage, checked when the actor
starts) and runs the very same loop as a local run (:func:`validator.inference.run_models`) on one shard
at a time, returning each image's detections as the local loop would have written them. The driver writes
them into the usual results files in image order, shard after shard, so ``predictions/*.json``,
``summary.json`` and the tables are byte-identical to a local run, and then computes the metrics itself:
the evaluation of 5000 images takes seconds next to the inference's minutes, and on one process it needs
no merging of per-image evaluations at all (faster-coco-eval's distributed evaluator merges evalImgs the
same way; nothing would be gained but a second code path to keep equal).

- Box units that are read from the outputs (end-to-end heads) are resolved on the first shard, which runs
  alone first; every other shard gets that answer, as every later image of a local run does.
- An actor that dies mid-shard (node lost, OOM, killed) is replaced and its shard re-run elsewhere: a shard's
  result depends only on its images, so the files stay byte-identical. A shard that fails ``RETRIES`` times is
  an error; an input error raised by the loop itself (e.g. an unreadable image) is the usual one line, exit 2.
- Ctrl-C cancels the shards in flight and kills the actors; the output folder is never committed half-written
  (validate's OutputDir aborts).

Ray is an optional extra (``pip install "qharness[ray]"``) imported only here, only with ``--ray``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from validator.errors import InputError

RAY_HINT = 'pip install "qharness[ray]"'
RETRIES = 3  # attempts per shard when actors die
SHARD_INFO = "\0shard"  # the key of a shard result's own timing (no model is named so)
START_TIMEOUT_S = 300.0  # actors must load the dataset and models within this


@dataclass(frozen=True)
class RayOptions:
    address: str = "local"  # local (start one on this machine) | auto (the running cluster) | ray://host:port ...
    workers: int | None = None  # actors (default: the cluster's CPUs / threads per actor)
    threads: int | None = None  # inference threads per model in each actor (default: as a local run)
    shard: int = 64  # images per shard


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, an optional extra: {RAY_HINT}") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address must answer before Ray is asked to join it: ``ray.init`` retries an unreachable GCS
    for minutes, printing warnings, where a user wants one line and exit 2."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        host, port = rest, "10001" if address.startswith("ray://") else "6379"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"--ray {address}: cannot reach {host}:{port} ({e.strerror or e})") from None


def connect(opts: RayOptions):
    """The ``ray`` module, initialised: an instance already started in this process is used as it is."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if opts.address not in ("local", "auto"):
        _reachable(opts.address)
    kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if opts.address == "local":  # this machine only: loopback, no token files to share
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(num_cpus=os.cpu_count() or 1, _node_ip_address="127.0.0.1", **kw)
        else:
            ray.init(address=opts.address, **kw)
    except Exception as e:  # noqa: BLE001  a cluster that cannot be reached is an input error, one line
        raise InputError(f"--ray {opts.address}: cannot connect ({' '.join(str(e).split())[:200]})") from None
    return ray


class ShardRunner:
    """One actor: the dataset and the models loaded once; ``run(start, stop)`` is one shard."""

    def __init__(self, job: dict):
        from validator.data.coco import load_dataset
        from validator.run import Settings
        from validator.runners import DelegateSpec
        from validator.sources import ModelSpec, open_model

        self.node = socket.gethostname()
        for p in [job["data"], *(m["path"] for m in job["models"])] + ([job["images"]] if job["images"] else []):
            if not os.access(p, os.R_OK):
                raise InputError(f"worker {self.node}: {p}: not readable there (--ray needs the dataset and the "
                                 "models on a path every worker sees: shared storage)")
        self.settings = Settings(**job["settings"])
        self.ds = load_dataset(Path(job["data"]), Path(job["images"]) if job["images"] else None,
                               limit=self.settings.limit, skip_missing=job["skip_missing"])
        delegate = DelegateSpec.parse(self.settings.delegate) if self.settings.delegate else None
        self.sources = [open_model(ModelSpec(Path(m["path"]), m["role"], m["manifest"]), self.ds, self.settings,
                                   m["name"], job["threads"], delegate) for m in job["models"]]

    def ping(self) -> str:
        return self.node

    def run(self, start: int, stop: int, box_units: dict) -> dict:
        from validator.data.coco import subset
        from validator.inference import run_models

        _fault(start)
        t0 = time.perf_counter()

        sub = subset(self.ds, [r.id for r in self.ds.images[start:stop]])
        writers = {}
        for s in self.sources:
            s.dropped_detections, s.nonfinite = 0, {}
            if box_units.get(s.name) is not None:
                s.box_units = box_units[s.name]
            writers[s.name] = _Collect()
        run_models(self.sources, sub, self.settings, 1, writers, quiet=True, check_finite=False)
        out = {s.name: {"images": writers[s.name].images, "timing": dict(s.timing),
                        "dropped": s.dropped_detections, "box_units": s.box_units, "nonfinite": dict(s.nonfinite)}
               for s in self.sources}
        out[SHARD_INFO] = {"seconds": time.perf_counter() - t0, "node": self.node, "images": stop - start}
        return out


FAULT_ENV = "QHARNESS_RAY_FAULT"  # tests: "MARKER_FILE:START" kills the actor that starts shard START, once


def _fault(start: int) -> None:
    """Fault injection for the tests: the actor process dies (as on a lost node) the first time the shard
    starting at image ``START`` begins; the marker file makes it once."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    marker, _, at = spec.rpartition(":")
    if at.isdigit() and int(at) == start and marker and not os.path.exists(marker):
        Path(marker).write_text("killed")
        os._exit(1)


class _Collect:
    """A results writer that keeps each image's detections (what PredictionWriter.add would have been given)."""

    def __init__(self):
        self.images: list[list[dict]] = []

    def add(self, dets: list[dict]) -> None:
        if dets:
            self.images.append(dets)


def run_models_ray(sources, ds, settings, writers: dict, opts: RayOptions, *, data, images, skip_missing: bool,
                   threads: int | None, quiet: bool = False) -> dict:
    """Run every model source without cached predictions over ``ds`` on Ray; results go to ``writers`` in
    image order, exactly as :func:`validator.inference.run_models` writes them. Returns what timing.json
    records of the run (actors, shards, retries, nodes)."""
    from validator.inference import check_finite
    from validator.progress import Progress
    from validator.sources import threads_per_model

    todo = [s for s in sources if s.kind == "model" and not s.cached]
    if not todo:
        return {}
    ray = connect(opts)
    n = len(ds.images)
    shards = [(i, min(i + opts.shard, n)) for i in range(0, n, max(1, opts.shard))]
    per_model = opts.threads or threads or (threads_per_model(len(sources)) if len(sources) > 1 else None)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    actor_cpus = max(1, per_model or 1)
    n_actors = max(1, min(len(shards), opts.workers or max(1, cpus // actor_cpus)))
    job = {"data": str(Path(data).resolve()), "images": str(Path(images).resolve()) if images else None,
           "skip_missing": skip_missing, "settings": asdict(settings), "threads": per_model,
           "models": [{"path": str(Path(s.path).resolve()), "role": s.role, "manifest": s.manifest, "name": s.name}
                      for s in todo]}
    Actor = ray.remote(num_cpus=actor_cpus, max_restarts=0)(ShardRunner)
    actors = [Actor.remote(job) for _ in range(n_actors)]
    info = {"ray": {"address": opts.address, "actors": n_actors, "threads_per_model": per_model,
                    "shard_images": opts.shard, "shards": len(shards), "retries": 0, "nodes": [],
                    "shard_seconds": []}}
    t0 = time.perf_counter()
    state = {s.name: {"timing": {"preprocess_s": 0.0, "inference_s": 0.0, "postprocess_s": 0.0, "images": 0},
                      "dropped": 0, "nonfinite": {}} for s in todo}
    try:
        info["ray"]["nodes"] = sorted(set(_get(ray, [a.ping.remote() for a in actors], START_TIMEOUT_S)))
        if not quiet:
            import sys

            print(f"validate: ray: {n_actors} actors on {', '.join(info['ray']['nodes'])}, {len(shards)} shards of "
                  f"<= {opts.shard} images, {per_model or 'default'} threads per model", file=sys.stderr, flush=True)
        with Progress(n, "validate (ray)", "images", quiet=quiet) as progress:
            box_units = {s.name: s.box_units for s in todo}
            done: dict[int, dict] = {}
            written = 0

            def flush() -> None:
                nonlocal written
                while written in done:
                    res = done.pop(written)
                    for s in todo:
                        r = res[s.name]
                        for dets in r["images"]:
                            writers[s.name].add(dets)
                        st = state[s.name]
                        for k in st["timing"]:
                            st["timing"][k] += r["timing"].get(k, 0)
                        st["dropped"] += r["dropped"]
                        for k, v in r["nonfinite"].items():
                            st["nonfinite"][k] = st["nonfinite"].get(k, 0) + v
                    info["ray"]["shard_seconds"].append(round(res[SHARD_INFO]["seconds"], 4))
                    progress.update(shards[written][1] - shards[written][0])
                    written += 1

            # the first shard alone: box units read from the outputs are settled there, as on one machine
            first = _run_shards(ray, Actor, job, actors, [0], shards, box_units, info)
            done.update(first)
            for s in todo:
                box_units[s.name] = first[0][s.name]["box_units"]
            flush()
            rest = list(range(1, len(shards)))
            for k, res in _iter_shards(ray, Actor, job, actors, rest, shards, box_units, info):
                done[k] = res
                flush()
    finally:  # also on Ctrl-C: the actors stop with the driver's run
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001, S110  already gone
                pass
    wall = time.perf_counter() - t0
    for s in todo:
        st = state[s.name]
        s.timing = {**st["timing"], "loop_wall_s": wall}
        s.dropped_detections = st["dropped"]
        s.nonfinite = st["nonfinite"]
        s.box_units = box_units[s.name]
    check_finite(todo, n)
    info["ray"]["wall_s"] = round(wall, 3)
    return info


def _get(ray, refs, timeout: float):
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.RayTaskError as e:
        raise _cause(e) from None
    except ray.exceptions.GetTimeoutError:
        raise InputError(f"--ray: workers did not start within {timeout:.0f} s") from None


def _cause(e):
    """The exception raised inside the actor: an InputError stays one (one line, exit 2)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, InputError):
        return InputError(str(cause))
    if isinstance(e.__cause__, InputError):
        return InputError(str(e.__cause__))
    if "InputError" in type(e).__name__ or isinstance(e, InputError):
        return InputError(str(e).strip().splitlines()[-1])
    return e


def _run_shards(ray, Actor, job, actors, which, shards, box_units, info) -> dict:
    return dict(_iter_shards(ray, Actor, job, actors, which, shards, box_units, info))


def _iter_shards(ray, Actor, job, actors, which, shards, box_units, info):
    """Yield (shard index, result) as shards finish; a dead actor is replaced and its shard re-run."""
    queue = list(which)
    attempts = {k: 0 for k in which}
    running: dict = {}  # ref -> (shard, actor index)
    idle = list(range(len(actors)))
    while queue or running:
        while queue and idle:
            k, a = queue.pop(0), idle.pop(0)
            attempts[k] += 1
            running[actors[a].run.remote(*shards[k], box_units)] = (k, a)
        ready, _ = ray.wait(list(running), num_returns=1)
        ref = ready[0]
        k, a = running.pop(ref)
        try:
            res = ray.get(ref)
        except ray.exceptions.RayActorError:
            info["ray"]["retries"] += 1
            if attempts[k] >= RETRIES:
                raise InputError(f"--ray: shard of images {shards[k][0]}..{shards[k][1] - 1} failed on "
                                 f"{attempts[k]} workers") from None
            actors[a] = Actor.remote(job)  # a fresh actor in its place; the shard goes back in the queue
            queue.insert(0, k)
            idle.append(a)
            continue
        except ray.exceptions.RayTaskError as e:
            raise _cause(e) from None
        idle.append(a)
        yield k, res
