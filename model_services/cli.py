"""``python -m model_services {build,serve,package}``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from model_services.store.train import build_store

    results = build_store(args.out, only=args.only or None, seed=args.seed, if_missing=args.if_missing)
    print("| version | dir | train | held-out | held-out accuracy | seconds |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.version} | {r.directory} | {r.train_size} | {r.heldout_size} "
            f"| {r.heldout_accuracy:.4f} | {r.seconds:.1f} |"
        )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from model_services.config import ServeConfig
    from model_services.jobs.settings import JobSettings
    from model_services.server import run
    from model_services.store.manifest import ManifestError

    try:
        config = ServeConfig(
            model_dir=args.model_dir,
            host=args.host,
            port=args.port,
            grpc_port=args.grpc_port,
            max_batch_size=args.max_batch_size,
            max_delay_ms=args.max_delay_ms,
            max_queue_size=args.max_queue_size,
            request_timeout_ms=args.request_timeout_ms,
            max_text_chars=args.max_text_chars,
            max_batch_texts=args.max_batch_texts,
            device=args.device,
            num_threads=args.num_threads,
            worker=args.worker,
            served_version=args.served_version,
            switch_interval_ms=args.switch_interval_ms,
            http_parser=args.http,
            fault_rate=args.fault_rate,
            fault_latency_ms=args.fault_latency_ms,
            fault_match=args.fault_match,
            drain_grace_s=args.drain_grace_s,
            redis_url=args.redis_url,
            jobs=JobSettings(
                result_ttl_s=args.jobs_result_ttl_s,
                timeout_s=args.jobs_timeout_s,
                max_depth=args.jobs_max_depth,
                max_attempts=args.jobs_max_attempts,
                visibility_timeout_s=args.jobs_visibility_timeout_s,
                concurrency=args.jobs_concurrency,
                dead_letter_max_len=args.jobs_dead_letter_max_len,
                dead_letter_max_age_s=args.jobs_dead_letter_max_age_s,
                webhook_attempts=args.jobs_webhook_attempts,
                webhook_backoff_s=args.jobs_webhook_backoff_s,
                webhook_max_backoff_s=args.jobs_webhook_max_backoff_s,
                webhook_max_age_s=args.jobs_webhook_max_age_s,
                webhook_allow_cidrs=tuple(args.jobs_webhook_allow_cidr),
                webhook_allow_hosts=tuple(args.jobs_webhook_allow_host),
                # From the environment, not argv: argv is visible to every local user.
                webhook_secret=os.environ.get("SWITCHYARD_WEBHOOK_SECRET") or None,
            ),
            report_url=args.report_url,
            report_inputs=not args.report_no_inputs,
            pin_header=args.pin_header,
            pin_body_field=args.pin_body_field,
            warmup=not args.no_warmup,
            gc_freeze=not args.no_gc_freeze,
            access_log=args.access_log,
            log_level=args.log_level,
        )
        return run(config)
    except (ValueError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _package(args: argparse.Namespace) -> int:
    from model_services.store.package import package_model

    out = package_model(
        store=args.store,
        name=args.name,
        version=args.version,
        module_file=args.module,
        module_format=args.format,
        tokenizer_file=args.tokenizer,
        labels=[x.strip() for x in args.labels.split(",") if x.strip()],
        max_length=args.max_length,
    )
    print(out)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_services", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="train the example versions into a model store")
    b.add_argument("--out", type=Path, required=True, help="model store root")
    b.add_argument(
        "--only",
        action="append",
        choices=["sentiment-v3", "sentiment-v4"],
        help="build just this version (repeatable)",
    )
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--if-missing", action="store_true", help="skip versions already in the store whose hashes verify")
    b.set_defaults(func=_build)

    s = sub.add_parser("serve", help="serve one version directory")
    s.add_argument("--model-dir", type=Path, required=True, help="<store>/<name>/<version>")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--grpc-port", type=int, default=None, help="also serve the Open Inference Protocol over gRPC on this port"
    )
    s.add_argument("--max-batch-size", type=int, default=32, help="1 turns batching off")
    s.add_argument(
        "--max-delay-ms",
        type=float,
        default=5.0,
        help="longest a request waits for batch-mates that are known to be arriving",
    )
    s.add_argument("--max-queue-size", type=int, default=1024, help="beyond: 503 + Retry-After")
    s.add_argument("--request-timeout-ms", type=float, default=30_000.0, help="default deadline")
    s.add_argument("--max-text-chars", type=int, default=5_000, help="longer text: 413")
    s.add_argument("--max-batch-texts", type=int, default=256, help="texts per request")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    s.add_argument("--num-threads", type=int, default=None, help="torch intra-op threads")
    s.add_argument(
        "--worker",
        choices=["process", "thread"],
        default="process",
        help="run the model in a child process (own GIL) or a thread of the server",
    )
    s.add_argument(
        "--switch-interval-ms",
        type=float,
        default=0.5,
        help="Python GIL switch interval of the server process",
    )
    s.add_argument(
        "--http",
        choices=["httptools", "h11"],
        default="httptools",
        help="uvicorn's HTTP parser (h11, pure Python, for comparison)",
    )
    s.add_argument("--served-version", default=None, help="serve under this version name")
    s.add_argument("--fault-rate", type=float, default=0.0, help="share of predictions -> 500")
    s.add_argument("--fault-latency-ms", type=float, default=0.0, help="added to predictions")
    s.add_argument("--fault-match", default=None, help="fail predictions whose text contains this")
    j = s.add_argument_group("async jobs", "enabled by --redis-url; webhook secret from $SWITCHYARD_WEBHOOK_SECRET")
    j.add_argument("--redis-url", default=None, help="redis://host:port/db; enables /v1/jobs")
    j.add_argument("--jobs-result-ttl-s", type=float, default=86400.0, help="keep finished jobs this long")
    j.add_argument("--jobs-timeout-s", type=float, default=900.0, help="a job not done by then fails")
    j.add_argument("--jobs-max-depth", type=int, default=10_000, help="unfinished jobs before 429")
    j.add_argument("--jobs-max-attempts", type=int, default=3, help="failures before the dead-letter stream")
    j.add_argument("--jobs-visibility-timeout-s", type=float, default=30.0, help="reclaim a dead worker's job after")
    j.add_argument("--jobs-concurrency", type=int, default=4, help="jobs in flight per replica")
    j.add_argument("--jobs-dead-letter-max-len", type=int, default=10_000, help="dead letters kept per version")
    j.add_argument(
        "--jobs-dead-letter-max-age-s", type=float, default=7 * 86400.0, help="dead letters older than this are dropped"
    )
    j.add_argument("--jobs-webhook-attempts", type=int, default=5, help="delivery attempts per webhook")
    j.add_argument("--jobs-webhook-backoff-s", type=float, default=0.5, help="first retry delay; doubles each time")
    j.add_argument("--jobs-webhook-max-backoff-s", type=float, default=300.0, help="longest retry delay")
    j.add_argument(
        "--jobs-webhook-max-age-s", type=float, default=86400.0, help="a webhook not delivered by then is dropped"
    )
    j.add_argument(
        "--jobs-webhook-allow-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="let callback URLs reach this network (repeatable); by default only public addresses",
    )
    j.add_argument(
        "--jobs-webhook-allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="let callback URLs reach this host name, whatever it resolves to (repeatable)",
    )
    s.add_argument(
        "--drain-grace-s",
        type=float,
        default=0.0,
        help="after SIGTERM, report not ready but keep accepting this long",
    )
    s.add_argument(
        "--report-url",
        default=os.environ.get("SWITCHYARD_REPORT_URL") or None,
        help="post answers to this shadow collector (the control plane's /v1/shadow/reports);"
        " token from $SWITCHYARD_REPORT_TOKEN",
    )
    s.add_argument("--report-no-inputs", action="store_true", help="never send request texts to the collector")
    s.add_argument(
        "--pin-header",
        default="x-model-version",
        help="the header routes pin versions by (the policy's spec.pinning.header): near misses get a Warning",
    )
    s.add_argument(
        "--pin-body-field",
        default="model_version",
        help="the body field routes pin versions by (spec.pinning.body_field): near misses get a Warning",
    )
    s.add_argument("--no-warmup", action="store_true", help="skip warm-up batches")
    s.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave the startup heap to the garbage collector (for comparison: full collections then pause serving)",
    )
    s.add_argument("--access-log", action="store_true")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=_serve)

    k = sub.add_parser("package", help="make a store version from your own TorchScript/export")
    k.add_argument("--store", type=Path, required=True)
    k.add_argument("--name", required=True)
    k.add_argument("--version", required=True)
    k.add_argument("--module", type=Path, required=True, help="model.pt or model.pt2 file")
    k.add_argument("--format", choices=["torchscript", "torch-export"], required=True)
    k.add_argument("--tokenizer", type=Path, required=True, help="tokenizers JSON file")
    k.add_argument("--labels", required=True, help="comma-separated, in logit order")
    k.add_argument("--max-length", type=int, default=128)
    k.set_defaults(func=_package)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Weights come from the model store only; make any library that would reach
    # for a hub fail fast instead.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code
