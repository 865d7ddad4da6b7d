"""The `racecast` command line: make bundles, look inside them, serve them."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .bundle import Bundle, BundleError, DataDir, open_bundle, summary, validate_id, write_bundle
from .race import RaceError

app = typer.Typer(
    help="racecast: stream race replays to many browser viewers from pre-encoded bundles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

DataOpt = Annotated[
    Optional[Path],
    typer.Option("--data", help="Data directory holding bundles by id [default: $RACECAST_DATA, else the per-user data dir]."),
]
DEMO_ID = "demo"


def fail(msg: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[float], None]]:
    """A rich progress bar driven by ``update(fraction)`` callbacks (quiet when not a TTY)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as p:
        task = p.add_task(description, total=1.0)
        yield lambda f: p.update(task, completed=min(max(f, 0.0), 1.0))
        p.update(task, completed=1.0)


def version_callback(value: bool) -> None:
    if value:
        out.print(f"racecast {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = None,
) -> None:
    """racecast: stream race replays to many browser viewers from pre-encoded bundles."""


def build_demo(data: DataDir, replay_id: str = DEMO_ID, laps: int = 57, seed: int = 0) -> Path:
    """Simulate the built-in race into ``data`` unless it is already there."""
    path = data.path_of(replay_id)
    if data.exists(replay_id):
        return path
    from .sources.simulate import simulate_race

    with progress_bar(f"simulating {laps} laps") as update:
        race = simulate_race(laps=laps, seed=seed, id=replay_id, progress=update)
    with progress_bar("encoding bundle") as update:
        write_bundle(race, path, progress=update)
    return path


@app.command()
def simulate(
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write the bundle exactly here (default: <data>/<id>).")] = None,
    laps: Annotated[int, typer.Option(help="Race length in laps (1-200).", min=1, max=200)] = 57,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical bundles.", min=0)] = 0,
    replay_id: Annotated[Optional[str], typer.Option("--id", help="Replay id [default: sim-<seed>].")] = None,
    drivers: Annotated[int, typer.Option(help="Number of cars (2-26).", min=2, max=26)] = 20,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
    data: DataOpt = None,
) -> None:
    """Simulate a realistic race and write it as a replay bundle."""
    from .sources.simulate import simulate_race

    rid = replay_id or f"sim-{seed}"
    try:
        validate_id(rid)
    except ValueError as e:
        fail(str(e), 2)
    path = out_path if out_path is not None else DataDir(data).path_of(rid)
    if path.exists() and not force:
        fail(f"{path} already exists (use --force to replace it)")
    with progress_bar(f"simulating {laps} laps") as update:
        race = simulate_race(laps=laps, seed=seed, n_drivers=drivers, id=rid, progress=update)
    with progress_bar("encoding bundle") as update:
        write_bundle(race, path, overwrite=force, progress=update)
    b = open_bundle(path)
    out.print(f"wrote [bold]{rid}[/]: {b.n_frames} frames, {b.duration:.0f} s, {b.size_bytes / 1e6:.1f} MB -> {path}")


def _open(target: str, data: Optional[Path]) -> Bundle:
    """Open a bundle given as a path or as an id in the data directory."""
    p = Path(target)
    try:
        if p.exists() or "/" in target or target.startswith("."):
            return open_bundle(p)
        store = DataDir(data)
        try:
            return open_bundle(store.path_of(target))
        except ValueError as e:
            fail(str(e), 2)
    except BundleError as e:
        fail(str(e))
    raise AssertionError("unreachable")


def describe(b: Bundle) -> dict[str, Any]:
    """What `racecast inspect` shows: the summary, then where the bytes go (per file, stream and channel)."""
    info = summary(b)
    msg = b.streams["msgpack"]
    if msg.derived:  # measured on one derived block in the middle (built now, ~0.1 s)
        blk = msg.block((msg.count // 2) // msg.block_items)
        per_frame = round(len(blk.data) / len(blk), 1)
    else:
        per_frame = round(int(msg.info.get("bytes", 0)) / max(1, msg.count), 1)
    files = {str(k): int(v) for k, v in b.manifest["files"].items()}
    info.update(
        path=str(b.path),
        size_bytes=b.size_bytes,
        format_version=b.manifest["format_version"],
        content_hash=b.manifest.get("content_hash"),
        driver_codes=[d["code"] for d in b.drivers],
        files=files,
        streams={
            name: {
                "items": s.count,
                "stored_bytes": s.nbytes(),
                "derived_from": s.info.get("derived_from"),
                **({"bytes_per_item": round(int(s.info.get("bytes", 0)) / max(1, s.count), 1)} if not s.derived else {}),
            }
            for name, s in b.streams.items()
        },
        channels=b.manifest.get("channels", {}),
        bytes_per_frame=per_frame,
    )
    if b.format_version < 3:
        info["upgrade"] = f"racecast upgrade {b.id}"
    return info


@app.command()
def inspect(
    target: Annotated[str, typer.Argument(help="Bundle path, or replay id in the data directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data: DataOpt = None,
) -> None:
    """Show what a bundle holds and where its bytes go: per file, per stream and per channel."""
    b = _open(target, data)
    info = describe(b)
    if as_json:
        out.print_json(json.dumps(info))
        return
    t = Table(show_header=False, box=None)
    for k in ("id", "title", "date", "frames", "fps", "duration", "laps", "drivers", "format_version", "size_bytes",
              "bytes_per_frame", "path"):  # fmt: skip
        t.add_row(k, str(info[k]))
    t.add_row("driver codes", " ".join(info["driver_codes"]))
    total = max(1, info["size_bytes"])
    for name, n in info["files"].items():
        t.add_row(f"file {name}", f"{n:,} B ({100 * n / total:.1f} %)")
    for name, s in info["streams"].items():
        if s["stored_bytes"] is None:
            t.add_row(f"stream {name}", f"{s['items']} items, derived from {s['derived_from']} when served (cached)")
        else:
            t.add_row(f"stream {name}", f"{s['items']} items, {s['stored_bytes']:,} B stored, {s['bytes_per_item']} B/item")
    ch = info["channels"]
    if ch:
        gz_total = max(1, sum(c["gzip_bytes"] for c in ch.values()))
        for name, c in sorted(ch.items(), key=lambda kv: -kv[1]["gzip_bytes"]):
            t.add_row(f"channel {name}", f"{c['gzip_bytes']:,} B gzipped ({100 * c['gzip_bytes'] / gz_total:.1f} %),"
                                         f" {c['varint_bytes']:,} B as varints")  # fmt: skip
    if "upgrade" in info:
        t.add_row("[yellow]old format[/]", f"run `{info['upgrade']}` to rewrite it as format 3 (about 20x smaller)")
    out.print(t)


def _targets(targets: Optional[list[str]], all_: bool, store: DataDir, verb: str) -> list[str]:
    """The replays a batch command works on: those named, plus every one in ``store`` with ``--all``."""
    names = list(targets or [])
    if all_:
        names += [i for i in store.ids() if i not in names]
    if not names:
        fail(f"name the replays to {verb}, or pass --all", 2)
    return names


def _bundle_path(name: str, store: DataDir) -> Path:
    """A bundle given as a path, or as an id in ``store`` (ValueError for a bad id)."""
    return Path(name) if ("/" in name or Path(name).is_dir()) else store.path_of(name)


@app.command()
def upgrade(
    targets: Annotated[Optional[list[str]], typer.Argument(help="Replay ids (or bundle paths) to upgrade.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Upgrade every bundle in the data directory.")] = False,
    data: DataOpt = None,
) -> None:
    """Rewrite old bundles (format 1-2) as format 3, in place and atomically; newer ones are left alone."""
    from .bundle.upgrade import upgrade_bundle

    store = DataDir(data)
    failed = 0
    for name in _targets(targets, all_, store, "upgrade"):
        try:
            before, after = upgrade_bundle(_bundle_path(name, store))
        except (BundleError, ValueError, OSError) as e:
            out.print(f"[red]failed[/]: {name}: {e}")
            failed += 1
            continue
        if before == after:
            out.print(f"up to date: {name}")
        else:
            out.print(f"upgraded {name}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    if failed:
        raise typer.Exit(1)


@app.command()
def warm(
    targets: Annotated[Optional[list[str]], typer.Argument(help="Replay ids (or bundle paths) to warm.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Warm every replay in the data directory.")] = False,
    data: DataOpt = None,
) -> None:
    """Build the seed-compatible msgpack frames of replays into the disk block cache now.

    A format-3 bundle derives them per block the first time a process needs one (a few ms of CPU
    per 100 frames). `racecast serve` warms a replay in the background once a msgpack viewer
    plays it; run this after ingest to have it done before anyone watches (or with RACECAST_WARM=0).
    """
    from .bundle.diskcache import disk_cache
    from .bundle.warming import warm as warm_bundle

    store = DataDir(data)
    failed = 0
    for name in _targets(targets, all_, store, "warm"):
        try:
            b = open_bundle(_bundle_path(name, store))
            try:
                with progress_bar(f"building {b.id}") as update:
                    report = warm_bundle(b, update)
            finally:
                b.close()
        except (BundleError, ValueError, OSError) as e:
            out.print(f"[red]failed[/]: {name}: {e}")
            failed += 1
            continue
        if report.refused:
            out.print(f"[red]failed[/]: {name}: {report.refused}")
            failed += 1
            continue
        out.print(f"warm: {b.id}: {report.blocks} blocks in {disk_cache().root} ({report.built} built now)")
    if failed:
        raise typer.Exit(1)


@app.command()
def verify(
    target: Annotated[str, typer.Argument(help="Bundle path, or replay id in the data directory.")],
    data: DataOpt = None,
) -> None:
    """Check a bundle's structure and content hash; exit 1 if it is damaged."""
    b = _open(target, data)
    try:
        b.verify()
    except BundleError as e:
        fail(str(e))
    out.print(f"ok: {b.id} ({b.n_frames} frames, {b.manifest['content_hash']})")


@app.command()
def chart(
    target: Annotated[str, typer.Argument(help="Bundle path, or replay id in the data directory.")],
    kind: Annotated[str, typer.Option("--kind", help="gaps | positions | strategy | laptimes | compare")] = "gaps",
    drivers: Annotated[Optional[str], typer.Option("--drivers", help="Comma-separated codes to highlight, e.g. VER,NOR (compare: exactly two).")] = None,
    laps: Annotated[Optional[str], typer.Option("--laps", help="compare: the two laps, e.g. 12,12, fastest,same or 7,fastest [default: each driver's fastest].")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="Output image: FILE.png or FILE.svg.")] = Path("chart.png"),
    data: DataOpt = None,
) -> None:
    """Draw a race chart: race trace, lap chart, tyre strategy, lap times, or two laps compared."""
    from .analysis.charts import ChartError, chart_spec, compare_spec
    from .analysis.compare import CompareError, compare_laps, lap_trace, parse_lap_ref, resolve_laps, source_of
    from .analysis.plot import FORMATS, PlotUnavailable, draw
    from .analysis.store import AnalysisError, analysis_of_bundle

    if out_file.suffix.lower() not in FORMATS:
        fail(f"--out must end in {' or '.join(FORMATS)}, got {out_file.name!r}", 2)
    b = _open(target, data)
    try:
        selected = [c.strip() for c in (drivers or "").split(",") if c.strip()]
        if kind == "compare":
            if len(selected) != 2:
                raise ChartError("--kind compare needs --drivers A,B (two drivers)")
            refs = (laps or "fastest,fastest").split(",")
            try:
                if len(refs) != 2:
                    raise ValueError
                lap_refs = [parse_lap_ref(v) for v in refs]
            except ValueError:
                raise ChartError(f"--laps must be two laps like 12,12 (a number, fastest or same), got {laps!r}") from None
            codes = [d["code"] for d in b.drivers]
            src = source_of(b)
            traces = [lap_trace(src, codes, c, n) for c, n in resolve_laps(src, codes, list(zip(selected, lap_refs)))]
            spec = compare_spec(compare_laps(*traces), b.drivers)
        else:
            if laps:
                raise ChartError("--laps is for --kind compare")
            doc, _derived = analysis_of_bundle(b)
            spec = chart_spec(doc["laps"], b.drivers, kind, selected)
    except (ChartError, CompareError) as e:
        fail(str(e), 2)
    except AnalysisError as e:
        fail(str(e))
    try:
        draw(spec, out_file, title=b.title)
    except PlotUnavailable as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write {out_file}: {e}")
    what = spec["title"] if kind == "compare" else f"{spec['title'].lower()} ({len(spec['series']) or len(spec.get('rows', []))} drivers)"
    out.print(f"wrote {escape(what)} of [bold]{escape(b.id)}[/] -> {escape(str(out_file))}")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data: DataOpt = None,
) -> None:
    """List the bundles in the data directory."""
    store = DataDir(data)
    rows = store.summaries()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print(f"no replays in {store.root} (try: racecast simulate --data {store.root})")
        return
    t = Table("id", "title", "laps", "frames", "duration", "drivers", title=str(store.root))
    for r in rows:
        if "error" in r:
            t.add_row(r["id"], f"[red]damaged: {r['error']}[/]", "", "", "", "")
        else:
            title = r["title"] + (f" [yellow](old format: run `{r['upgrade']}`)[/]" if "upgrade" in r else "")
            t.add_row(r["id"], title, str(r["laps"]), str(r["frames"]), f"{r['duration']:.0f} s", str(r["drivers"]))
    out.print(t)


HostOpt = Annotated[str, typer.Option("--host", help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).", min=0, max=65535)]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Worker processes (they share bundles through the page cache).", min=1, max=64)]
LogOpt = Annotated[str, typer.Option("--log-level", help="uvicorn log level (critical, error, warning, info, debug).")]
RedisOpt = Annotated[
    Optional[str],
    typer.Option(
        "--redis",
        help="Share watch-party rooms with every process and host using this Redis (redis://HOST:PORT/DB). "
        "Without it rooms live in the process, and --workers > 1 turns rooms off.",
        show_default=False,
    ),
]


def _serve(store: DataDir, host: str, port: int, workers: int, log_level: str, path: str, what: str, ingest: bool = True,
           ingest_options: dict[str, Any] | None = None, redis: str | None = None, limits: Any = None,
           **app_options: Any) -> None:  # fmt: skip
    from .server.serve import check_redis_url, display_url, serve

    if redis is not None:
        if problem := check_redis_url(redis):
            fail(problem)

    def ready(h: str, p: int) -> None:
        out.print(f"{what}: [bold]{display_url(h, p, path)}[/]  (Ctrl+C to stop)", highlight=False, soft_wrap=True)

    try:
        extra: dict[str, Any] = {"ingest_options": ingest_options} if ingest_options else {}
        if redis is not None:
            extra["redis"] = redis
        serve(store.root, host, port, workers=workers, log_level=log_level, on_ready=ready, ingest=ingest, limits=limits,
              **extra, **app_options)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e}")
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl+C it handled; the shutdown was clean
        pass


@app.command()
def serve(
    data: DataOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: WorkersOpt = 1,
    log_level: LogOpt = "warning",
    ingest: Annotated[
        bool,
        typer.Option(
            "--ingest/--no-ingest",
            help="Let POST /api/sessions ingest F1 sessions not yet on disk (FastF1, in a child process). "
            "Turn off on public hosts: anyone could start CPU- and download-heavy work.",
        ),
    ] = True,
    offline: Annotated[
        bool, typer.Option("--offline", help="Server-side ingest loads from the FastF1 cache only, never the network.")
    ] = False,
    fastf1_cache: Annotated[
        Optional[Path], typer.Option("--fastf1-cache", help="FastF1 cache directory for server-side ingest [default: FastF1's].")
    ] = None,
    redis: RedisOpt = None,
    allowed_host: Annotated[
        Optional[list[str]],
        typer.Option("--allowed-host", help="A host name clients reach this server by (repeat; '*' any). Other Host headers "
                     "are refused (DNS rebinding). [default: the loopback names for a loopback --host, else any]"),
    ] = None,
    allowed_origin: Annotated[
        Optional[list[str]],
        typer.Option("--allowed-origin", help="A browser origin (e.g. https://viewer.example) allowed on the WebSocket and "
                     "POST besides the page's own (repeat; '*' any). [default: localhost origins]"),
    ] = None,
    max_connections: Annotated[int, typer.Option("--max-connections", help="Most WebSocket viewers at once (more: close 1013).", min=1)] = 10_000,
    header_timeout: Annotated[
        float, typer.Option("--header-timeout", help="Seconds a client has to send a request's headers (silent sockets, slowloris); 0: none.", min=0)
    ] = 10.0,
    max_header_bytes: Annotated[
        int, typer.Option("--max-header-bytes", help="Largest request line + headers; larger gets 400.", min=1024)
    ] = 16 * 1024,
    keep_alive_timeout: Annotated[
        float, typer.Option("--keep-alive-timeout", help="Seconds an HTTP connection may stay idle between requests.", min=1)
    ] = 5.0,
    ping_interval: Annotated[
        float, typer.Option("--ping-interval", help="Seconds between WebSocket keepalive pings; 0: none.", min=0)
    ] = 20.0,
    ping_timeout: Annotated[
        float, typer.Option("--ping-timeout", help="Seconds a viewer has to answer a ping (one that never reads is dropped); 0: never.", min=0)
    ] = 20.0,
) -> None:
    """Serve the replays in the data directory: web viewer, REST API, WebSocket playback, rooms, /metrics.

    Limits for misbehaving clients and what an operator must do on a public host: docs/security.md.
    """
    from .server.serve import ConnectionLimits

    store = DataDir(data)
    n = len(store.ids())
    what = f"serving {n} replay{'s' if n != 1 else ''} from {store.root}{'' if ingest else ' (ingest disabled)'} at"
    options: dict[str, Any] = {}
    if offline:
        options["offline"] = True
    if fastf1_cache is not None:
        options["cache_dir"] = str(fastf1_cache.absolute())
    limits = ConnectionLimits(header_timeout=header_timeout, max_header_bytes=max_header_bytes, keep_alive=keep_alive_timeout,
                              ping_interval=ping_interval, ping_timeout=ping_timeout)
    _serve(store, host, port, workers, log_level, "/", what, ingest, options, redis, limits=limits,
           allowed_hosts=allowed_host or None, allowed_origins=allowed_origin or None, max_connections=max_connections)


@app.command()
def demo(
    data: DataOpt = None,
    laps: Annotated[int, typer.Option(help="Laps of the demo race when it has to be simulated.", min=1, max=200)] = 57,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: WorkersOpt = 1,
    log_level: LogOpt = "warning",
    redis: RedisOpt = None,
) -> None:
    """Simulate the built-in demo race if missing, serve it and print the viewer URL."""
    store = DataDir(data)
    path = build_demo(store, laps=laps)
    info = describe(open_bundle(path))
    out.print(f"demo replay ready: {info['id']} ({info['laps']} laps, {info['frames']} frames, "
              f"{info['size_bytes'] / 1e6:.1f} MB on disk, a seed msgpack frame {info['bytes_per_frame']:,.0f} B on the wire)")
    _serve(store, host, port, workers, log_level, f"/?replay={DEMO_ID}", "open the viewer at", redis=redis)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="A few viewer counts and short windows (under a minute).")] = False,
    out_md: Annotated[
        Optional[Path], typer.Option("--out", help="Markdown file whose 'Streaming benchmark' section is replaced [default: docs/performance.md of the checkout].")
    ] = None,
    designs: Annotated[str, typer.Option(help="Comma-separated subset of racecast,seed,floor (also racecast-v2, racecast-before: see benchmarks/harness.py).")] = "racecast,seed,floor",
) -> None:
    """Benchmark streaming: racecast, the seed's design and the floor, side by side (source checkout only)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "harness.py").is_file():
        fail("racecast bench runs from a source checkout (the benchmarks/ directory is not installed with the package)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.harness import main as bench_main

    args = ["--designs", designs] + (["--quick"] if quick else []) + (["--out", str(out_md)] if out_md else [])
    raise typer.Exit(bench_main(args))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def accuracy(ctx: typer.Context) -> None:
    """Score replays of the real sessions (../shared/realdata) against their truth; write docs/accuracy.md.

    Every session is ingested every way (table, table without status, FastF1 frames), each in a
    child process; options: --sessions A,B --paths table,fastf1 --pack DIR --out FILE --no-bundle --json FILE.
    """
    from .accuracy.run import main as accuracy_main

    raise typer.Exit(accuracy_main(list(ctx.args)))


deploy_app = typer.Typer(help="Print deployment configurations.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("nginx")
def deploy_nginx(
    upstream: Annotated[str, typer.Option(help="Where racecast listens (HOST:PORT).")] = "127.0.0.1:8000",
    listen: Annotated[str, typer.Option(help="What nginx listens on (nginx `listen` syntax).")] = "80",
    cache_dir: Annotated[Optional[str], typer.Option("--cache-dir", help="Chunk cache directory.", show_default="/var/cache/nginx/racecast")] = None,
    cache_size: Annotated[str, typer.Option(help="Largest chunk cache (nginx size).")] = "10g",
) -> None:
    """Print an nginx config: chunks cached forever with concurrent misses collapsed, WebSocket proxied (docs/deploy.md)."""
    from .deploy import nginx_config

    print(nginx_config(upstream, listen, cache_dir=cache_dir, cache_size=cache_size), end="")


ingest_app = typer.Typer(help="Turn real telemetry into replay bundles.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")


def _write_ingested(load: Callable[[Callable[[str, float], None]], Any], store: DataDir, force: bool) -> None:
    """Run a source loader with a progress bar per stage, then write its bundle (nothing on failure)."""
    from .ingest_memory import tune_for_ingest
    from .sources import IngestError

    tune_for_ingest()  # this process only ingests: freed memory goes back to the system

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=console, disable=not console.is_terminal) as p:
        tasks: dict[str, Any] = {}

        def update(stage: str, fraction: float) -> None:
            if stage not in tasks:
                tasks[stage] = p.add_task(stage, total=1.0)
            p.update(tasks[stage], completed=min(max(fraction, 0.0), 1.0))

        try:
            race = load(update)
        except IngestError as e:
            fail(str(e))
    try:
        path = store.path_of(race.id)
    except ValueError as e:
        fail(str(e), 2)
    if path.exists() and not force:
        fail(f"{path} already exists (use --force to replace it)")
    with progress_bar("encoding bundle") as upd:
        try:
            write_bundle(race, path, overwrite=force, progress=upd)
        except (BundleError, RaceError) as e:
            fail(str(e))
    out.print(f"wrote [bold]{race.id}[/]: {race.n_frames} frames -> {path}")
    for w in race.event.get("warnings", ()):
        console.print(f"[yellow]warning:[/] {escape(str(w))}", highlight=False, soft_wrap=True)


@ingest_app.command("fastf1")
def ingest_fastf1(
    year: Annotated[int, typer.Argument(help="Season, 2018 or later.", min=2018, max=2100)],
    event: Annotated[str, typer.Argument(help="Round number or event name FastF1 resolves.")],
    session: Annotated[str, typer.Option("--session", help="R, S, Q, SQ, FP1, FP2 or FP3.")] = "R",
    cache: Annotated[Optional[Path], typer.Option("--cache", help="FastF1 cache directory [default: FastF1's, e.g. $FASTF1_CACHE].")] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Load from the FastF1 cache only, never the network; says what the cache lacks.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
    data: DataOpt = None,
) -> None:
    r"""Ingest an F1 session through FastF1 (pip install 'racecast\[fastf1]')."""
    from .sources.fastf1 import load_fastf1_session

    ev: int | str = int(event) if event.isdigit() else event
    _write_ingested(
        lambda upd: load_fastf1_session(year, ev, session, cache_dir=cache, progress=upd, offline=offline), DataDir(data), force
    )


@ingest_app.command("table")
def ingest_table(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet in long form: time, driver, x, y, ...")],
    replay_id: Annotated[Optional[str], typer.Option("--id", help="Replay id [default: from the file name].")] = None,
    session: Annotated[
        str,
        typer.Option(
            "--session",
            help="R (a race), Q (knockout qualifying: segments and order from the data) or auto: "
            "a race if the cars start together, else a qualifying (said in the warnings).",
        ),
    ] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
    data: DataOpt = None,
) -> None:
    """Ingest telemetry of any moving objects from a CSV or Parquet table."""
    from .sources.table import load_table

    if session.strip().upper() not in ("R", "Q", "AUTO"):
        fail(f"--session must be R, Q or auto, got {session!r}", 2)
    if replay_id is not None:
        try:
            validate_id(replay_id)  # before loading a possibly huge table
        except ValueError as e:
            fail(str(e), 2)
    _write_ingested(lambda upd: load_table(file, id=replay_id, progress=upd, session=session), DataDir(data), force)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
