"""The `withsense` command: database, migrations, ingestion, training, search, serving, demo."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from service.config import REPO_ROOT, Settings, SettingsError, load_settings
from service.store.schema import alembic_config  # noqa: F401 - `migrate`, the tests and the benchmarks use it from here


def _engine(settings: Settings):
    from service.store.db import make_engine, resolve_url

    return make_engine(resolve_url(settings))


def _library(settings: Settings):
    """The engine and the settings of the library it opens, its image precision decided
    (service/store/library_precision.py): every command that reads or writes vectors starts here."""
    from service.store.library_precision import library_settings

    engine = _engine(settings)
    return engine, library_settings(engine, settings)


def cmd_db_replica(args, settings: Settings) -> int:
    """The embedded primary's streaming replica on ``--port`` (service/store/embedded_replica.py)."""
    from sqlalchemy.exc import DBAPIError

    from service.store import embedded_replica
    from service.store.db import make_engine
    from service.store.replicas import RECHECK_S as REPLICA_RECHECK_S
    from service.store.replicas import check_health

    if settings.database_url:
        print("DATABASE_URL is set: replicas of that server are made by its own tooling (docs/deploy.md)",
              file=sys.stderr)
        return 1
    folder = embedded_replica.replica_dir(settings.data_dir, args.port)
    url = embedded_replica.url_for(folder, args.port)
    try:
        if args.replica_action == "start":
            print(embedded_replica.start(settings.pgdata_dir, folder, args.port))
            print(f"reads go to it when WITHSENSE_REPLICA_URLS={url}", file=sys.stderr)
        elif args.replica_action == "stop":
            print("stopped" if embedded_replica.stop(folder) else "not running")
        elif args.replica_action == "remove":
            embedded_replica.remove(settings.pgdata_dir, folder, args.port)
            print(f"removed {folder}")
        elif args.replica_action == "url":
            print(url)
        elif args.replica_action == "status":
            if not embedded_replica.running(folder):
                print(f"not running ({folder})")
                return 3
            engine = make_engine(url)
            try:
                # Two looks a moment apart: one alone cannot tell a lag from a primary that was idle.
                with engine.connect() as conn:
                    first = check_health(conn, settings.max_replica_lag_s)
                time.sleep(REPLICA_RECHECK_S)
                with engine.connect() as conn:
                    health = check_health(conn, settings.max_replica_lag_s, first, REPLICA_RECHECK_S)
            except DBAPIError as exc:
                print(f"running but not answering: {exc.orig}")
                return 3
            finally:
                engine.dispose()
            print(f"{'healthy' if health.healthy else 'unhealthy'}: {health.reason}; lag {health.lag_s} s; {url}")
            return 0 if health.healthy else 3
    except embedded_replica.ReplicaError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def cmd_db(args, settings: Settings) -> int:
    from service.store import embedded

    if args.action == "replica":
        if args.replica_action is None:
            print("withsense db replica start|stop|status|url|remove [--port N]", file=sys.stderr)
            return 2
        return cmd_db_replica(args, settings)
    if settings.database_url and args.action in ("start", "stop"):
        print(f"DATABASE_URL is set: the database at {settings.database_url} is managed elsewhere", file=sys.stderr)
        return 1
    if args.action == "start":
        print(embedded.start(settings.pgdata_dir))
    elif args.action == "stop":
        print("stopped" if embedded.stop(settings.pgdata_dir) else "not running")
    elif args.action == "status":
        url = settings.database_url or embedded.running_url(settings.pgdata_dir)
        print(f"running: {url}" if url else f"not running (data directory {settings.pgdata_dir})")
        return 0 if url else 3
    elif args.action == "url":
        from service.store.db import resolve_url

        print(resolve_url(settings))
    elif args.action == "analyst-url":
        from sqlalchemy.engine import make_url

        from service.store.db import resolve_url

        url = make_url(resolve_url(settings)).set(drivername="postgresql", username="analyst", password=None)
        print(url.render_as_string(hide_password=False))
    return 0


def cmd_migrate(args, settings: Settings) -> int:
    from alembic import command

    from service.store.db import resolve_url

    config = alembic_config(resolve_url(settings))
    if args.downgrade:
        command.downgrade(config, args.revision or "-1")
    else:
        command.upgrade(config, args.revision or "head")
    print(f"database at {'revision ' + args.revision if args.revision else 'head'}")
    return 0


def cmd_models_export(args, settings: Settings) -> int:
    """Export the networks to ONNX into the data directory (done on first use anyway; this does it now).

    With WITHSENSE_IMAGE_PRECISION empty, the image networks' int8 copies too: a new library on a CPU
    with VNNI runs them, an fp32 one does not, and this command opens no library (the Docker image
    runs it at build, perhaps on another CPU than the one it will run on).
    MiniLM's int8 copy too unless WITHSENSE_QUERY_PRECISION=fp32 (search queries run it)."""
    from ml.onnx_encoders import TEXT_NETWORK, USE_NETWORK, WEIGHTS_DISTRIBUTIONS, OnnxModelMissing, ensure_exported
    from service.runtime import export_models

    try:
        if args.all:
            images = [n for n in sorted(WEIGHTS_DISTRIBUTIONS) if n not in (TEXT_NETWORK, USE_NETWORK)]
            paths = (ensure_exported(settings.onnx_path, sorted(WEIGHTS_DISTRIBUTIONS))
                     + ensure_exported(settings.onnx_path, [*images, TEXT_NETWORK], "int8"))
        else:
            paths = export_models(settings)
    except OnnxModelMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    if not paths:
        print("nothing to export: WITHSENSE_ENCODER_RUNTIME is not onnx (or the backend is clip)")
    return 0


def cmd_ingest(args, settings: Settings) -> int:
    from service.ingest import loader
    from service.ingest.dataset import DatasetInvalid, read_dataset
    from service.runtime import encoders_for
    from service.store.model_rows import encoder_model_ids
    from service.store.ranker_rows import project_missing_photos

    path = args.path or settings.dataset
    if not args.path and settings.uses_fixture_dataset:
        from service.config import FIXTURE_DATASET_NOTICE

        print(FIXTURE_DATASET_NOTICE, file=sys.stderr)
    if not path:
        print("no dataset folder: pass PATH or set WITHSENSE_DATASET", file=sys.stderr)
        return 2
    try:
        dataset = read_dataset(path, extra_dir=settings.extra_dataset or None)
    except DatasetInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    engine, settings = _library(settings)
    report = loader.load_dataset(engine, settings, dataset, progress=not args.quiet)
    encoders = encoders_for(settings)
    n_photos = loader.embed_photos(engine, settings, encoders.image, progress=not args.quiet)
    n_texts = loader.embed_descriptions(engine, settings, encoders.text, progress=not args.quiet)
    if encoders.multilingual is not None:  # USE's vectors too: descriptions are matched across languages
        loader.embed_descriptions(engine, settings, encoders.multilingual, progress=not args.quiet)
    image_model_id = encoder_model_ids(engine, settings, image_encoder=encoders.image)["image"]
    n_projected = project_missing_photos(engine, settings, image_model_id)
    # Fingerprints let uploads spot re-encoded copies of dataset photos (service/photos/fingerprint.py).
    from service.photos.fingerprint import FINGERPRINT

    loader.embed_photos(engine, settings, FINGERPRINT, progress=not args.quiet)
    from service.ingest.embedding_worker import drain

    n_queued = drain(engine, settings, encoders.image, progress=not args.quiet)  # uploads no server took up
    from service.store import facet_indexes

    facets = facet_indexes.refresh_active(engine, settings)  # the new photos may make a place common
    for line in report.lines():
        print(line)
    print(f"vectors computed: {n_photos} photos, {n_texts} descriptions, {n_queued} queued uploads; "
          f"{n_projected} photos added to the active model")
    if facets and (facets["built"] or facets["dropped"]):
        print(f"filter indexes of common places, cameras and uploaders: {len(facets['built'])} built, "
              f"{len(facets['dropped'])} dropped")
    return 0


def _add_files(paths: list[Path], args, settings: Settings, metadata: dict) -> int:
    """Shared by `ingest photo` and `ingest folder`: the same code path as the upload endpoint."""
    from service.ingest import folder
    from service.runtime import encoders_for

    engine, settings = _library(settings)
    report = folder.add_files(paths, engine=engine, settings=settings, encoders=encoders_for(settings),
                              progress=not args.quiet, **metadata)
    for line in report.lines():
        print(line)
    for path, photo_id in report.added:
        print(f"added {path} as photo {photo_id}")
    for path, photo_id in report.duplicates:
        print(f"already stored {path} as photo {photo_id}")
    return 0 if report.processed else 1


def cmd_ingest_photo(args, settings: Settings) -> int:
    from pydantic import ValidationError

    from service.http.schemas import PhotoFields

    given = {"description": args.description, "place": args.place, "camera": args.camera,
             "uploader": args.uploader, "taken_at": args.taken_at, "shows_child": args.shows_child}
    try:  # the upload form's own checks, so the command and the endpoint accept the same values
        metadata = PhotoFields.model_validate({k: v for k, v in given.items() if v is not None}).model_dump()
    except ValidationError as exc:
        for error in exc.errors():
            print(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}", file=sys.stderr)
        return 2
    return _add_files([Path(args.file)], args, settings, metadata)


def cmd_ingest_folder(args, settings: Settings) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"{folder} is not a folder", file=sys.stderr)
        return 2
    # Every regular file is offered, so a stray .gif or .txt shows up as rejected with its reason.
    paths = sorted(p for p in (folder.rglob("*") if args.recursive else folder.iterdir())
                   if p.is_file() and not p.name.startswith("."))
    if not paths:
        print(f"no files in {folder}", file=sys.stderr)
        return 1
    return _add_files(paths, args, settings, {"uploader": args.uploader})


def cmd_worker(args, settings: Settings) -> int:
    """Compute image vectors for queued uploads: until the queue is empty (--once) or until stopped.

    Until stopped: woken by each upload's NOTIFY (and polling), stopped by SIGTERM or SIGINT after
    the batch in hand, exit code 0. `withsense serve` runs it as a supervised child (service/processes.py).
    """
    import signal
    import threading

    if args.once:
        from service.ingest.embedding_worker import drain
        from service.runtime import encoders_for

        engine, settings = _library(settings)
        image_encoder = encoders_for(settings).image
        print(f"image vectors computed for {drain(engine, settings, image_encoder, progress=not args.quiet)} queued photo(s)")
        return 0
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    # A supervisor blocks SIGTERM until the handler is set (service/processes.py): a pending one lands now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    from service.ingest.embedding_worker import SERVER_BATCH, EmbeddingWorker
    from service.photos import embedding_queue
    from service.runtime import encoders_for

    engine, settings = _library(settings)
    image_encoder = encoders_for(settings).image
    if stopping.is_set():
        return 0
    # Open the networks at the batch size the worker runs (ONNX Runtime keeps its largest batch's
    # memory), so the first upload waits for no session and the memory plateau is reached now.
    from PIL import Image

    image_encoder.encode([Image.new("RGB", (64, 64))] * min(settings.embed_batch, SERVER_BATCH))
    worker = EmbeddingWorker(engine, settings, image_encoder)
    worker.start()
    listener = threading.Thread(target=embedding_queue.listen, args=(engine, worker.wake, stopping),
                                name="embedding-job-listener", daemon=True)
    listener.start()
    if not args.quiet:
        print(f"image worker ready (pid {os.getpid()}): {image_encoder.name}", file=sys.stderr, flush=True)
    while not stopping.wait(1.0):
        if not worker.is_alive():
            return 1
    worker.stop()
    listener.join(5.0)
    engine.dispose()
    return 0


def cmd_stop(args, settings: Settings) -> int:
    """Stop every `withsense serve` of this data directory, then the embedded PostgreSQL."""
    from service.processes import stop_servers
    from service.store import embedded

    for pid in stop_servers(settings):
        print(f"stopped the server (pid {pid})")
    if not settings.database_url:
        print("database stopped" if embedded.stop(settings.pgdata_dir) else "database not running")
    return 0


def cmd_users(args, settings: Settings) -> int:
    """People and their API keys (service/accounts): a key is printed once, only its hash is stored."""
    from sqlalchemy.exc import IntegrityError

    from service.accounts import users
    from service.store.db import session_scope

    try:
        with session_scope(_engine(settings)) as session:
            if args.users_action == "add":
                user_id, key = users.add_user(session=session, name=args.name, role=args.role)
                print(key)
                print(f"user {args.name} ({args.role}, id {user_id}) added; the key above is shown only this once",
                      file=sys.stderr)
            elif args.users_action == "key":
                print(users.issue_key(session=session, name=args.name))
                print(f"a new key for {args.name}; it is shown only this once", file=sys.stderr)
            elif args.users_action == "revoke":
                count = users.revoke(session=session, name=args.name, key_id=args.key_id)
                print(f"revoked {count} key(s) of {args.name}")
            else:
                print(f"{'id':>5}  {'name':24} {'role':13} {'keys':>4}  {'revoked':>7}  created")
                for row in users.list_users(session=session):
                    print(f"{row.user_id:>5}  {row.name:24} {row.role:13} {row.active_keys:>4}  {row.revoked_keys:>7}  "
                          f"{row.created_at:%Y-%m-%d %H:%M}")
    except users.AccountError as exc:
        print(exc, file=sys.stderr)
        return 1
    except IntegrityError as exc:  # the name's format (users' check constraint)
        print(f"not a valid user name: letters, digits and . _ @ -, at most 64, starting with a letter or digit "
              f"({type(exc.orig).__name__})", file=sys.stderr)
        return 1
    return 0


def cmd_train(args, settings: Settings) -> int:
    from service.runtime import encoders_for
    from service.store.model_rows import active_ranker
    from service.training.publish import train_and_publish

    engine, settings = _library(settings)
    if args.if_no_active:
        with engine.connect() as conn:
            active = active_ranker(conn, settings.encoder_key)
        if active:
            print(f"using the active model {active.version}")
            return 0
    if args.if_better:
        from service.training.selection import arrived_since

        with engine.connect() as conn:
            current = active_ranker(conn, settings.encoder_key)
            arrived = arrived_since(conn, current) if current else None
        if arrived is not None and not any(arrived.values()):
            print(f"nothing arrived since the active model {current.version}: not retrained")
            return 0
        if arrived:
            print(f"since the active model {current.version}: " + ", ".join(f"{n} {k}" for k, n in arrived.items()))
    model = train_and_publish(engine, settings, encoders_for(settings), run_cv=not args.no_cv,
                              force=args.force, progress=not args.quiet)
    print(json.dumps(model, indent=2))
    if not model["activated"]:
        print(f"not activated: CV R@1+R@5 {model['cv_headline']} does not beat the active model's "
              f"{model['previous_headline']} ({model['previous_version']}); --force activates it anyway")
    return 0


def cmd_evaluate(args, settings: Settings) -> int:
    from service.runtime import encoders_for
    from service.search.searcher import Searcher
    from service.training.evaluation import evaluate, no_match_report, write_reports

    engine, settings = _library(settings)
    encoders = encoders_for(settings)
    searcher = Searcher(engine, settings, encoders.query_text, multilingual=encoders.multilingual)
    report = evaluate(engine, settings, searcher, progress=not args.quiet)
    report["no_match"] = no_match_report(searcher, report.get("calibration"), progress=not args.quiet)
    if args.ood:
        from service.training.ood import ood_check

        family = report.get("cv_chosen") or "listwise_mlp"
        report["ood"] = ood_check(engine, settings, encoders_for(settings), family=family, progress=not args.quiet)
    write_reports(report, engine, searcher, args.out)
    for mode, r in report["results"].items():
        print(f"{mode:10s} R@1 {r['R@1']:.3f}  R@5 {r['R@5']:.3f}  R@10 {r['R@10']:.3f}  MRR {r['MRR']:.3f}  "
              f"median rank {r['median_rank']}")
    ru = report.get("russian") or {}
    for name, r in (ru.get("results") or {}).items():
        if r["n_queries"]:
            print(f"ru set, {name + ':':13s} R@1 {r['R@1']:.3f}  R@5 {r['R@5']:.3f}  R@10 {r['R@10']:.3f}  "
                  f"MRR {r['MRR']:.3f}  median rank {r['median_rank']}  ({r['n_queries']} queries)")
    nm = report["no_match"]
    print(f"no-match queries with a best score under {nm['threshold']}: {nm['share_under']:.2f} of {nm['n_queries']}; "
          f"right top-1 median score {nm['right_top1']['median']}; mixed-set ECE {nm.get('mixed', {}).get('ECE')}")
    print(f"blocked by the content rule: {report['blocked_by_content_rule']} of {report['queries']}; "
          f"written to {args.out / 'evaluation.md'}")
    return 0


def cmd_search(args, settings: Settings) -> int:
    from service.runtime import encoders_for
    from service.search.searcher import Searcher

    engine, settings = _library(settings)
    encoders = encoders_for(settings)
    searcher = Searcher(engine, settings, encoders.query_text, multilingual=encoders.multilingual)
    response = searcher.search(args.query, limit=args.limit)
    searcher.close()  # writes its search-log line
    if args.json:
        print(json.dumps(response.to_dict(), indent=2))
    elif response.blocked:
        print(response.notice)
    else:
        for rank, result in enumerate(response.results, start=1):
            print(f"{rank}. {result.score:.3f}  photo {result.photo_id}  {result.file_name}")
        print(f"model {response.model_version}, {response.took_ms:.1f} ms")
    return 0


def _host_and_port(bind: str) -> tuple[str, str]:
    """``bind``'s host and port, for a --host or --port that replaces one of them; gunicorn's own
    defaults (127.0.0.1, 8000) where WITHSENSE_BIND names none (a unix socket, a host alone)."""
    if bind.startswith(("unix:", "fd://")):
        return "127.0.0.1", "8000"
    host, colon, port = bind.rpartition(":")
    return (host, port) if colon and port.isdigit() else (bind, "8000")


def serve_settings(args, settings: Settings) -> Settings:
    """The settings `withsense serve` runs with: the environment's (WITHSENSE_BIND, WITHSENSE_WORKERS,
    WITHSENSE_THREADS), then each flag that was given. A flag left out changes nothing."""
    overrides = {}
    if args.host is not None or args.port is not None:
        host, port = _host_and_port(settings.bind)
        overrides["bind"] = f"{host if args.host is None else args.host}:{port if args.port is None else args.port}"
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.threads is not None:
        overrides["threads"] = args.threads
    return settings.with_overrides(overrides) if overrides else settings


def serve_flags(args) -> list[str]:
    """The serve flags that were given, for `demo` to hand on: one left out leaves its setting alone."""
    return [part for name in ("host", "port", "workers", "threads") if getattr(args, name) is not None
            for part in (f"--{name}", str(getattr(args, name)))]


def _database_running(settings: Settings) -> bool:
    """Whether a database is up before this command starts one: one it starts, it owns."""
    from service.store import embedded

    return bool(settings.database_url) or embedded.running_url(settings.pgdata_dir) is not None


def cmd_serve(args, settings: Settings) -> int:
    from service.store.db import resolve_url
    from service.store.library_precision import resolved_settings

    try:
        settings = serve_settings(args, settings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    owns_database = args.stop_database or not _database_running(settings)
    # Workers share one database: resolve (and start) the embedded server once, before forking;
    # the workers are forked with these settings, so the resolved URL is the one they use.
    settings = settings.with_overrides({"database_url": resolve_url(settings)})
    # The library's image precision, decided once, before forking: the web workers run it.
    settings = resolved_settings(settings)
    # gunicorn forked from this process, beside the image worker (service/processes.py): a second
    # interpreter (execv) would start Python and import the settings again, which the cold start pays for.
    from service.processes import serve

    return serve(settings, image_worker=not args.no_image_worker, stop_database=owns_database)


def cmd_demo(args, settings: Settings) -> int:
    """Everything `make demo` needs, each step a no-op when already done."""
    from service.store.library_precision import resolved_settings

    owns_database = not _database_running(settings)
    cmd_migrate(argparse.Namespace(revision=None, downgrade=False), settings)
    settings = resolved_settings(settings)  # so the export makes the networks of this library's precision only
    if cmd_models_export(argparse.Namespace(all=False), settings) != 0:
        return 1
    if cmd_ingest(argparse.Namespace(path=None, quiet=False), settings) != 0:
        return 1
    cmd_train(argparse.Namespace(quiet=False, no_cv=False, force=False, if_no_active=True, if_better=False), settings)
    # Serve from a fresh interpreter in this process's place. The steps above loaded torch,
    # TensorFlow and ONNX Runtime: workers forked from here would carry gigabytes they never use,
    # and ONNX Runtime's inherited thread pools abort them at exit (SIGABRT/SIGSEGV on shutdown).
    argv = [sys.executable, "-m", "service.cli", "serve", *serve_flags(args),
            *(["--stop-database"] if owns_database else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="withsense", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the embedded PostgreSQL")
    db.add_argument("action", choices=["start", "stop", "status", "url", "analyst-url", "replica"])
    db.add_argument("replica_action", nargs="?", choices=["start", "stop", "status", "url", "remove"],
                    help="for `db replica`: a streaming read replica of the embedded server")
    db.add_argument("--port", type=int, default=5433, help="the replica's port (default 5433)")
    db.set_defaults(func=cmd_db)

    migrate = sub.add_parser("migrate", help="apply Alembic migrations (to head by default)")
    migrate.add_argument("revision", nargs="?")
    migrate.add_argument("--downgrade", action="store_true", help="go down to REVISION (default: one step)")
    migrate.set_defaults(func=cmd_migrate)

    models = sub.add_parser("models", help="the encoder networks")
    models_sub = models.add_subparsers(dest="what", required=True)
    export = models_sub.add_parser("export", help="export the configured networks to ONNX, if not done yet")
    export.add_argument("--all", action="store_true",
                        help="every packaged network (MiniLM, USE, EfficientNet-Lite0/1/2 and their int8 copies)")
    export.set_defaults(func=cmd_models_export)

    ingest = sub.add_parser("ingest", help="load photos")
    ingest_sub = ingest.add_subparsers(dest="what", required=True)
    ds = ingest_sub.add_parser("dataset", help="the Practicum dataset folder")
    ds.add_argument("path", nargs="?", help="default: WITHSENSE_DATASET")
    ds.add_argument("--quiet", action="store_true")
    ds.set_defaults(func=cmd_ingest)
    one = ingest_sub.add_parser("photo", help="one photo file, searchable at once")
    one.add_argument("file")
    one.add_argument("--description")
    one.add_argument("--place")
    one.add_argument("--camera")
    one.add_argument("--uploader")
    one.add_argument("--taken-at", help="ISO 8601, e.g. 2024-05-01T12:00:00Z")
    one.add_argument("--shows-child", action="store_true", default=None,
                     help="the photo shows a child: the content rule withholds its image")
    one.add_argument("--quiet", action="store_true")
    one.set_defaults(func=cmd_ingest_photo)
    folder = ingest_sub.add_parser("folder", help="every photo file in a folder; resumable, already-stored files are skipped")
    folder.add_argument("folder")
    folder.add_argument("--recursive", action="store_true")
    folder.add_argument("--uploader")
    folder.add_argument("--quiet", action="store_true")
    folder.set_defaults(func=cmd_ingest_folder)

    worker = sub.add_parser("worker", help="compute image vectors for queued uploads (`serve` runs one)")
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--quiet", action="store_true")
    worker.set_defaults(func=cmd_worker)

    people = sub.add_parser("users", help="people who write, and their API keys")
    people_sub = people.add_subparsers(dest="users_action", required=True)
    add = people_sub.add_parser("add", help="add a person; prints their new API key once")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["photographer", "rater", "admin"])
    people_sub.add_parser("list", help="every person, their role and how many keys they hold")
    new_key = people_sub.add_parser("key", help="another key for an existing person (printed once)")
    new_key.add_argument("name")
    revoke = people_sub.add_parser("revoke", help="revoke a person's keys: refused from the next request on")
    revoke.add_argument("name")
    revoke.add_argument("--key-id", help="only this key (the 12 hex digits after ws_)")
    people.set_defaults(func=cmd_users)

    train = sub.add_parser("train", help="fit the ranker; activate it if it beats the active one")
    train.add_argument("--quiet", action="store_true")
    train.add_argument("--no-cv", action="store_true", help="skip the model comparison (one linear scorer)")
    when = train.add_mutually_exclusive_group()
    when.add_argument("--force", action="store_true", help="activate even if not better")
    when.add_argument("--if-better", action="store_true",
                      help="retrain only if votes, descriptions or photos arrived since the active model, and "
                           "activate only on a better CV R@1+R@5 (for a schedule: docs/deploy.md)")
    train.add_argument("--if-no-active", action="store_true",
                       help="do nothing when a model is already active for these encoders (docker-compose's init)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="test queries over test photos; writes reports/evaluation.*")
    evaluate.add_argument("--out", type=Path, default=REPO_ROOT / "reports")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.add_argument("--ood", action="store_true",
                          help="also the out-of-domain check: ~100 COCO photos held out of training, searched by caption")
    evaluate.set_defaults(func=cmd_evaluate)

    search = sub.add_parser("search", help="search from the command line")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=5)
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    for name, func in (("serve", cmd_serve), ("demo", cmd_demo)):
        p = sub.add_parser(name, help="serve the API with gunicorn" if name == "serve" else "set up everything, then serve")
        # No defaults here: a flag left out leaves the setting (WITHSENSE_BIND, ...) as it is.
        p.add_argument("--host", help="address to listen on (default: WITHSENSE_BIND's host, 127.0.0.1)")
        p.add_argument("--port", type=int, help="port to listen on (default: WITHSENSE_BIND's port, 8000)")
        p.add_argument("--workers", type=int, help="worker processes (default: WITHSENSE_WORKERS, 2)")
        p.add_argument("--threads", type=int, help="threads per worker (default: WITHSENSE_THREADS, 4)")
        p.set_defaults(func=func)
    serve = sub.choices["serve"]
    serve.add_argument("--no-image-worker", action="store_true",
                       help="run no `withsense worker` beside the web workers (one runs elsewhere)")
    serve.add_argument("--stop-database", action="store_true",
                       help="stop the embedded PostgreSQL on exit (the default when this command started it)")
    stop = sub.add_parser("stop", help="stop the servers of this data directory, then the embedded PostgreSQL")
    stop.set_defaults(func=cmd_stop)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow (Keras, which `train` and `evaluate` fit the listwise ranker with) reads its C++ log
    # level from the environment once, when its library loads: no argument can set it, so the entry
    # point does, before anything imports it. 2: warnings and errors only, not the start-up notices.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    from service.store.model_rows import ModelMismatch

    try:
        return args.func(args, settings) or 0
    except ModelMismatch as exc:  # vectors that must not meet (another precision, other packages): what to do
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
