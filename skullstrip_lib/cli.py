"""The ``skullstrip`` command.

Each subcommand is a thin layer over a library function: parse arguments,
call it, print a short summary. Errors a user can cause are printed as one
line (``skullstrip <command>: error: <file>: <problem>``) with exit status 1;
argument errors exit with status 2; an interruption (Ctrl-C, SIGTERM in
``preprocess``) is one line too, with status 128 + the signal's number. Any
other exception is a bug and shows its traceback; ``skullstrip --traceback
COMMAND`` shows it for the one-line errors too (for a bug report). Heavy
libraries are imported inside the subcommands so that ``skullstrip --help``
answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from . import __version__
from .errors import (
    Interrupted,
    InvalidArgumentError,
    SkullstripError,
    missing_extra,
    require_train_extra,
)

__all__ = ["build_parser", "main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _hash_arg(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their start-up lines muted: the one place this is done.

    As it loads and first looks for GPUs, TensorFlow's C++ side writes half a
    dozen lines to stderr (oneDNN, CUDA drivers, CPU instructions, absl's
    "before InitializeLog"), before Python's logging can be configured and
    whatever ``TF_CPP_MIN_LOG_LEVEL`` says (TensorFlow 2.21). They would precede
    every one-line error of ``train`` and ``export``. So the stderr file
    descriptor points at a temporary file while TensorFlow loads; if the import
    fails, what it wrote is shown, so that no real error is hidden. Later C++
    log lines below warnings are off (``TF_CPP_MIN_LOG_LEVEL=2``, unless set).
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                import keras  # noqa: F401
                import tensorflow as tf

                tf.config.list_physical_devices()  # CUDA's start-up lines come with the first look
            except BaseException:
                os.dup2(saved, 2)
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
                raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# --------------------------------------------------------------------------- fetch
def _cmd_fetch(args: argparse.Namespace) -> int:
    from .datasets import NFBS_KNOWN_HASH, fetch_nfbs

    if args.quiet:
        import pooch

        pooch.get_logger().setLevel("WARNING")  # its "Downloading file ..." lines
    root = fetch_nfbs(
        args.data_dir,
        n_subjects=args.subjects,
        url=args.url,  # None: $SKULLSTRIP_NFBS_URL, then the NFBS address
        known_hash=NFBS_KNOWN_HASH if args.known_hash == "pinned" else args.known_hash,
        keep_archive=not args.no_keep_archive,
        progressbar=not args.quiet,
        timeout=args.timeout,
    )
    print(root)
    return 0


# --------------------------------------------------------------------------- index
def _cmd_index(args: argparse.Namespace) -> int:
    from .datasets import index_dataset, write_index
    from .io import check_writable

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise SkullstripError(f"{out}: already exists (use --overwrite to replace it)")
    check_writable(out.parent)
    df = index_dataset(args.data_dir, fractions=tuple(args.fractions), seed=args.seed)
    write_index(df, out, overwrite=args.overwrite)
    counts = df["split"].value_counts().reindex(["train", "val", "test"]).fillna(0).astype(int)
    print(f"{out}: {len(df)} subjects (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")
    return 0


# --------------------------------------------------------------------------- synth
_SYNTH_OPTIONS = {"shape": "--shape", "voxel_size": "--voxel-size", "orientation": "--orientation",
                  "oblique_deg": "--oblique", "contrast": "--contrast"}


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synth import check_head_kwargs, write_nfbs_archive, write_nfbs_dataset

    head_kwargs = {
        "shape": tuple(args.shape),
        "voxel_size": tuple(args.voxel_size),
        "orientation": args.orientation,
        "oblique_deg": tuple(args.oblique),
        "deface": not args.no_deface,
        "contrast": args.contrast,
    }
    # Every parameter is checked before anything is written: no empty subject folder,
    # no synth_params.json for a run that cannot make a head.
    try:
        check_head_kwargs(head_kwargs)
    except ValueError as exc:
        message = str(exc)
        for name, option in _SYNTH_OPTIONS.items():
            if message.startswith(name + " "):
                message = option + message[len(name):]
        raise SkullstripError(f"{args.out_dir}: {message}") from None
    if args.archive:
        import hashlib

        from .datasets import NFBS_ARCHIVE

        archive = write_nfbs_archive(Path(args.out_dir) / NFBS_ARCHIVE, args.subjects,
                                     seed=args.seed, progress=not args.quiet,
                                     overwrite=args.overwrite, **head_kwargs)  # fmt: skip
        digest = hashlib.md5()
        with open(archive, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        print(f"{archive}: {args.subjects} synthetic subjects, {archive.stat().st_size:,} bytes, "
              f"md5:{digest.hexdigest()}")
        return 0
    folders = write_nfbs_dataset(
        args.out_dir,
        args.subjects,
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
        **head_kwargs,
    )
    print(f"{Path(args.out_dir) / 'NFBS_Dataset'}: {len(folders)} synthetic subjects")
    return 0


# --------------------------------------------------------------------------- preprocess
def _read_subjects(path: Path):
    from .datasets import index_dataset, read_index

    if path.is_dir():
        return index_dataset(path)
    if path.exists():
        return read_index(path)
    raise SkullstripError(f"{path}: no such index file or data folder")


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from .io import check_not_an_input
    from .preprocess import PreprocessConfig
    from .workflow import run_preprocessing

    index = _read_subjects(Path(args.input))
    # The report is never written over the index it reports on (an index named
    # OUT/preprocessed.csv), whatever --overwrite says.
    check_not_an_input([Path(args.output) / "preprocessed.csv"], [Path(args.input)])
    if args.subjects:
        index = index.iloc[: args.subjects]
    try:
        plugin_args = json.loads(args.plugin_args) if args.plugin_args else None
    except ValueError as exc:
        raise SkullstripError(f"--plugin-args is not valid JSON ({exc})") from None
    config = PreprocessConfig(
        shape=tuple(args.shape), spacing=args.spacing, n4=args.n4,
        normalization=args.normalization,
    )
    report = run_preprocessing(index, args.output, config, plugin=args.plugin,
                               workers=args.workers, plugin_args=plugin_args,
                               overwrite=args.overwrite, progress=not args.quiet)
    counts = report["status"].value_counts()
    print(f"{Path(args.output) / 'preprocessed.csv'}: "
          + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("done", "skipped", "failed")))
    failed = report[report["status"] == "failed"]
    for row in failed.itertuples():
        print(f"  failed {row.subject}: {row.error}", file=sys.stderr)
    return 1 if len(failed) else 0


# --------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    require_train_extra()  # before the run folder and minutes of data preparation
    if args.data is not None and not Path(args.data).exists():  # before TensorFlow loads
        raise SkullstripError(f"{args.data}: no such index file or data folder")
    _import_tensorflow_quietly()
    from .train import resolve_config, train

    config = resolve_config(args.profile, data=args.data, epochs=args.epochs,
                            steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                            auto_batch=False if args.fixed_batch else None,
                            seed=args.seed, workers=args.workers)
    run = train(config, args.output, resume=args.resume, progress=not args.quiet,
                allow_cpu=args.allow_cpu)
    print(f"{run}: trained; exported model in {run / 'export'}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    require_train_extra()  # Keras' exporter turns a missing tf2onnx into a plain ImportError
    if not Path(args.run).is_dir():  # before TensorFlow loads
        raise SkullstripError(f"{args.run}: no such training run folder")
    _import_tensorflow_quietly()
    from .train import export_run

    out = export_run(args.run, args.output, checkpoint=args.checkpoint,
                     overwrite=args.overwrite, tta=args.tta)
    print(f"{out}: model.onnx, model.json")
    if args.calibrate:
        from .evaluate import calibrate_threshold
        from .train import read_config, training_index

        config = read_config(Path(args.run) / "config.yaml")
        threshold, table = calibrate_threshold(out, training_index(config, progress=False),
                                               split="val", write=True, progress=not args.quiet)
        print(table.round(4).to_string(index=False))
        print(f"{out / 'model.json'}: threshold {threshold:g} (best mean Dice on the run's "
              "validation heads, native space)")
    return 0


# --------------------------------------------------------------------------- evaluate
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, summarize
    from .inference import load_model
    from .io import atomic_write_text, check_not_an_input, check_writable, file_key

    out = Path(args.output)
    figure = Path(args.figure) if args.figure else None
    if figure is not None and file_key(figure) == file_key(out):
        raise SkullstripError(f"{figure}: is also the table -o; choose another name for one")
    for target in (out, figure):
        if target is not None and target.exists() and not args.overwrite:
            raise SkullstripError(f"{target}: already exists (use --overwrite to replace it)")
        if target is not None:  # before minutes of predictions, not after
            check_writable(target.parent)
    model = load_model(args.model)
    index = _read_subjects(Path(args.data))
    # Neither output is ever written over what the run reads, whatever --overwrite says.
    weights = model.path
    model_files = [] if weights is None else [weights, weights.with_suffix(".json"),
                                              weights.parent / "model.json"]
    check_not_an_input([out, figure], [Path(args.data), *model_files,
                                       *(p for column in ("t1w", "brainmask", "brain")
                                         for p in index[column].dropna())])
    split = None if args.split == "all" else args.split
    scores = evaluate(model, index, split=split, progress=not args.quiet)
    atomic_write_text(out, scores.to_csv(index=False))
    print(summarize(scores).round(4).to_string())
    if args.figure:
        from .evaluate import worst_cases
        from .viz import worst_cases_figure

        worst_cases_figure(worst_cases(model, index, scores), scores, args.figure)
    return 0


# --------------------------------------------------------------------------- predict
def _cmd_predict(args: argparse.Namespace) -> int:
    import warnings

    from .errors import InputWarning
    from .inference import CONFIDENCE_FLOOR, strip
    from .viz import qc_overlay

    def one_line(message, category, *rest, **kwargs):
        # A worked-around input problem (NaN voxels, ...) is one line, like an error.
        print(f"skullstrip predict: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = one_line
        results = strip(args.scans, args.output, args.model,
                        qc=qc_overlay if args.qc else None, overwrite=args.overwrite,
                        progress=not args.quiet, check_volume=not args.no_volume_check,
                        check_head=not args.no_head_check)
    for r in results:
        note = f" ({r['format_note']})" if r["format_note"] else ""
        print(f"{r['brainmask']}: brain {r['volume_ml']:.0f} mL, confidence "
              f"{r['confidence']:.2f}{note}")
        if r["low_confidence"]:
            print(f"skullstrip predict: warning: {r['scan']}: low confidence "
                  f"{r['confidence']:.2f} (below {CONFIDENCE_FLOOR:g}): the mask is likely "
                  "wrong, check it", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- parser
def _subcommand(sub: argparse._SubParsersAction, name: str,
                func: Callable[[argparse.Namespace], int], summary: str,
                description: str) -> argparse.ArgumentParser:
    """A subcommand: *summary* is its line in ``skullstrip --help``, *description* heads its
    own ``--help`` (argparse folds its white space); *func* runs it with the parsed arguments."""
    p = sub.add_parser(name, help=summary, description=description)
    p.set_defaults(func=func)
    return p


def _common_options(p: argparse.ArgumentParser, *, overwrite: str | None = None,
                    quiet: str | None = None) -> None:
    """The flags most subcommands share, with what they replace and what they silence:
    ``--overwrite`` and ``-q/--quiet``."""
    if overwrite is not None:
        p.add_argument("--overwrite", action="store_true", help=overwrite)
    if quiet is not None:
        p.add_argument("-q", "--quiet", action="store_true", help=quiet)


def _fetch_parser(sub: argparse._SubParsersAction) -> None:
    p = _subcommand(sub, "fetch", _cmd_fetch, "download and extract the NFBS data set", """
        Download NFBS_Dataset.tar.gz (about 1.75 GB), check its MD5 and extract it safely into the
        data folder; or, with --subjects N, stream it and stop once N subjects are complete (each
        file's gzip CRC and NIfTI header are checked; the archive's MD5 cannot be). A second run
        does nothing.""")
    p.add_argument("--data-dir", help="data folder (default: $SKULLSTRIP_DATA, then "
                                      "~/skullstrip_data)")
    p.add_argument("--subjects", type=_positive_int, metavar="N",
                   help="have N subjects on disk: stream the archive and stop reading once "
                        "the first N complete ones (with those already there) are extracted")
    p.add_argument("--known-hash", type=_hash_arg, default="pinned", metavar="HASH",
                   help="expected hash of the whole archive as 'md5:...' or 'sha256:...', or "
                        "'none' to skip the check (default: the pinned MD5, or "
                        "$SKULLSTRIP_NFBS_HASH)")
    p.add_argument("--url", help="download address (default: $SKULLSTRIP_NFBS_URL, then the "
                                 "NFBS S3 address)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="give up waiting for the server after this long (default 60)")
    p.add_argument("--no-keep-archive", action="store_true",
                   help="delete the archive after a successful extraction")
    _common_options(p, quiet="no progress bars")


def _index_parser(sub: argparse._SubParsersAction) -> None:
    p = _subcommand(sub, "index", _cmd_index,
                    "list subjects and split them into train/val/test", """
        Pair each subject's T1w, brain mask and brain files by subject id and add a seeded
        subject-level split.""")
    p.add_argument("data_dir", help="NFBS_Dataset folder or the folder containing it")
    p.add_argument("-o", "--output", required=True, help="CSV file to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15),
                   metavar=("TRAIN", "VAL", "TEST"), help="split fractions (default 0.7 0.15 "
                                                           "0.15)")
    _common_options(p, overwrite="replace an existing CSV")


def _synth_parser(sub: argparse._SubParsersAction) -> None:
    from .synth import CONTRASTS, NFBS_SHAPE

    p = _subcommand(sub, "synth", _cmd_synth, "write synthetic heads in the NFBS layout", """
        Generate synthetic T1-weighted heads with exact brain masks, in the NFBS folder layout, on
        the NFBS grid by default. The same seed gives the same bytes.""")
    p.add_argument("out_dir", help="output folder (NFBS_Dataset/ is created inside)")
    p.add_argument("--archive", action="store_true",
                   help="write OUT_DIR/NFBS_Dataset.tar.gz laid out like the NFBS archive "
                        "instead of the folders, and print its MD5")
    p.add_argument("--subjects", type=_positive_int, default=3, metavar="N",
                   help="number of subjects (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--shape", type=_positive_int, nargs=3, default=NFBS_SHAPE,
                   metavar=("X", "Y", "Z"), help="grid shape in voxels (default: NFBS's, "
                                                 f"{' '.join(map(str, NFBS_SHAPE))})")
    p.add_argument("--voxel-size", type=float, nargs=3, default=(1.0, 1.0, 1.0),
                   metavar=("DX", "DY", "DZ"), help="voxel size in mm (default 1 1 1)")
    p.add_argument("--orientation", default="RAS",
                   help="voxel axis codes, e.g. RAS, LPS, PIR (default RAS)")
    p.add_argument("--oblique", type=float, nargs=3, default=(0.0, 0.0, 0.0),
                   metavar=("RX", "RY", "RZ"), help="grid rotation in degrees (default 0 0 0)")
    p.add_argument("--contrast", choices=CONTRASTS, default="t1",
                   help="tissue contrast (default t1)")
    p.add_argument("--no-deface", action="store_true", help="keep the face")
    _common_options(p, overwrite="replace subjects made with other parameters",
                    quiet="no progress bar")


def _preprocess_parser(sub: argparse._SubParsersAction) -> None:
    from .preprocess import MODEL_SHAPE, MODEL_SPACING, N4_BACKENDS, NORMALIZATIONS

    p = _subcommand(sub, "preprocess", _cmd_preprocess,
                    "N4, model grid and normalisation for many subjects", """
        Run N4 bias-field correction, resampling onto the model grid and intensity normalisation
        for every subject, as a nipype workflow. Finished subjects are skipped; a failing subject
        is reported and the others go on.""")
    p.add_argument("input", help="index CSV (skullstrip index) or a data folder")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--subjects", type=_positive_int, metavar="N",
                   help="only the first N subjects of the index")
    p.add_argument("--plugin",
                   help="nipype plugin: Linear, MultiProc, SLURM, SGE, ... (default MultiProc "
                        "when there are several workers, else Linear)")
    p.add_argument("--workers", type=_positive_int,
                   help="processes for MultiProc (default one per core)")
    p.add_argument("--plugin-args", metavar="JSON",
                   help='extra plugin arguments, e.g. \'{"sbatch_args": "--mem=4G"}\'')
    p.add_argument("--shape", type=_positive_int, nargs=3, default=MODEL_SHAPE,
                   metavar=("X", "Y", "Z"),
                   help=f"model grid shape (default {' '.join(map(str, MODEL_SHAPE))})")
    p.add_argument("--spacing", type=float, default=MODEL_SPACING,
                   help=f"model voxel size in mm (default {MODEL_SPACING:g})")
    p.add_argument("--n4", choices=N4_BACKENDS, default=N4_BACKENDS[0],
                   help=f"bias-field correction backend (default {N4_BACKENDS[0]})")
    p.add_argument("--normalization", choices=NORMALIZATIONS, default=NORMALIZATIONS[0],
                   help=f"intensity normalisation (default {NORMALIZATIONS[0]})")
    _common_options(p, overwrite="redo subjects whose outputs came from other inputs or "
                                 "parameters", quiet="no progress bar")


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from .train import TRAINING_PROFILES

    p = _subcommand(sub, "train", _cmd_train, "train a U-Net (sample, default or full profile)", """
        Train the 3D U-Net. A run folder gets config.yaml, log.csv, TensorBoard logs, best.keras,
        last.keras and an exported ONNX model. --resume continues a stopped run.""")
    p.add_argument("--profile", default="sample", choices=tuple(TRAINING_PROFILES),
                   help="sample: synthetic heads, minutes on a CPU; default: the shipped "
                        "model's recipe; full: 96x128x160 at 2 mm for a GPU (default sample)")
    p.add_argument("--data", help="index CSV or NFBS folder (default: synthetic heads)")
    p.add_argument("-o", "--output", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue a stopped run")
    p.add_argument("--epochs", type=_positive_int, help="override the profile's epochs")
    p.add_argument("--steps-per-epoch", type=_positive_int, help="override steps per epoch")
    p.add_argument("--batch-size", type=_positive_int,
                   help="override the batch size (in the full profile the most a step uses: "
                        "fewer when the GPU's free memory holds fewer)")
    p.add_argument("--fixed-batch", action="store_true",
                   help="use the batch size as it is, not sized to the GPU's free memory")
    p.add_argument("--allow-cpu", action="store_true",
                   help="train the full profile without a GPU (slowly); without it the full "
                        "profile stops at once when there is no GPU")
    p.add_argument("--seed", type=int, help="override the seed (default 0)")
    p.add_argument("--workers", type=_positive_int, help="preprocessing processes (default 2)")
    _common_options(p, quiet="no progress output")


def _export_parser(sub: argparse._SubParsersAction) -> None:
    from .inference import TTA_MODES
    from .train import CHECKPOINTS

    p = _subcommand(sub, "export", _cmd_export, "export a run's checkpoint to ONNX", """
        Write model.onnx and model.json (the preprocessing it needs) from a training run, for
        predict and evaluate.""")
    p.add_argument("run", help="training run folder")
    p.add_argument("-o", "--output", help="output folder (default RUN/export)")
    p.add_argument("--checkpoint", default="best.keras", choices=CHECKPOINTS)
    _common_options(p, overwrite="replace an existing export")
    p.add_argument("--tta", default="flip_lr", choices=TTA_MODES,
                   help="test-time augmentation predict will use (default flip_lr: average "
                        "with the left-right mirror image)")
    p.add_argument("--calibrate", action="store_true",
                   help="set the threshold to the one with the best native-space Dice on the "
                        "run's validation heads (they are re-read from its data)")
    _common_options(p, quiet="no progress output")


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    from .datasets import SPLITS

    p = _subcommand(sub, "evaluate", _cmd_evaluate,
                    "Dice, IoU, HD95 in native space on held-out subjects", """
        Predict every subject of a split and score it against its original mask on the scan's own
        grid.""")
    p.add_argument("--model", default="default",
                   help="bundled model name, model folder, or .onnx/.keras file (default: "
                        "the bundled default)")
    p.add_argument("--data", required=True, help="index CSV or data folder")
    p.add_argument("--split", default="test", choices=(*SPLITS, "all"),
                   help="which subjects (default test)")
    p.add_argument("-o", "--output", required=True, help="per-subject CSV to write")
    p.add_argument("--figure", help="also write a PNG of the worst subjects")
    _common_options(p, overwrite="replace an existing CSV", quiet="no progress bar")


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    from .inference import BRAIN_VOLUME_ML, CONFIDENCE_FLOOR, MIN_HEAD_CONTRAST

    p = _subcommand(sub, "predict", _cmd_predict,
                    "skull-strip scans: brain mask and brain, native space", f"""
        For each scan write <name>_brainmask and <name>_brain on the scan's own grid and in its
        format (NIfTI, MGH/MGZ, Analyze; NIfTI for MINC, which cannot be written), with its affine,
        header and data type, and <name>_brainmask.json with the volume and a confidence (0-1;
        below {CONFIDENCE_FLOOR:g} the mask is flagged as likely wrong). A BIDS dataset gives a
        BIDS-derivatives dataset (*_desc-brain_mask.nii.gz, *_desc-brain_T1w.nii.gz). NaN voxels
        count as background (with a warning); a scan whose brain is not brighter than the air, a
        mask that cannot be an adult brain, an output that would be an input are errors. Runs on
        the CPU.""")
    p.add_argument("scans", nargs="+",
                   help="scans (.nii, .nii.gz, .mgz, .mgh, .hdr/.img, .mnc), folders of them "
                        "(their *_brainmask and *_brain files are skipped), or a BIDS dataset")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (for a BIDS dataset: the derivatives dataset, e.g. "
                        "BIDS/derivatives/skullstrip)")
    p.add_argument("--model", default="default",
                   help="bundled model name, model folder, or .onnx/.keras file")
    p.add_argument("--qc", action="store_true", help="also write an overlay PNG per scan")
    p.add_argument("--no-volume-check", action="store_true",
                   help="accept a brain mask outside the adult range "
                        f"({BRAIN_VOLUME_ML[0]:.0f}-{BRAIN_VOLUME_ML[1]:.0f} mL) or empty: for "
                        "children, animals or partial brains")
    p.add_argument("--no-head-check", action="store_true",
                   help="accept a scan whose brain is not brighter than the air around the "
                        f"head (contrast below {MIN_HEAD_CONTRAST:g})")
    _common_options(p, overwrite="replace existing outputs (never an input)",
                    quiet="no progress bar")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line like every other error of the
    command (argparse prints the whole usage block first); its subcommands' parsers are of
    this class too (``add_subparsers`` makes them with the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _as_option(exc: BaseException, args: argparse.Namespace) -> str:
    """The first line of *exc*, naming the command's option (``--subjects``) where a library
    argument check names the function's argument (``n_subjects``) that the option set."""
    message = _first_line(exc)
    if isinstance(exc, InvalidArgumentError):
        dest = _ARGUMENT_DEST.get(exc.argument, exc.argument)
        if dest in vars(args) and message.startswith(exc.argument + " "):
            message = "--" + dest.replace("_", "-") + message[len(exc.argument):]
    return message


# The library's name of an argument where its option's differs.
_ARGUMENT_DEST = {"n_subjects": "subjects"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skullstrip`` command (used by the docs too)."""
    # Choices and defaults come from the library (none of these imports TensorFlow or pandas).
    from .io import MAX_VOXELS

    parser = _Parser(
        prog="skullstrip",
        description="Brain extraction of T1-weighted MRI: data, preprocessing and more. "
                    "Run 'skullstrip COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--max-voxels", type=_positive_int, default=MAX_VOXELS, metavar="N",
                        help="refuse scans whose header declares more voxels than this, before "
                             f"reading them (default {MAX_VOXELS:,}, a 512x512x512 grid)")
    parser.add_argument("--traceback", action="store_true",
                        help="print the Python traceback of an error, not just its one line "
                             "(for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_subcommand in (_fetch_parser, _index_parser, _synth_parser, _preprocess_parser,
                           _train_parser, _export_parser, _evaluate_parser, _predict_parser):
        add_subcommand(sub)
    return parser


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    What a user can cause ends in one line on stderr and a non-zero status:
    :class:`~skullstrip_lib.errors.SkullstripError`, ``OSError`` (named by its
    file), ``ValueError``, ``MemoryError``, a missing optional dependency, and an
    interruption. Anything else is a bug: its traceback is shown. With
    ``--traceback`` the one-line errors show theirs too.
    """
    from .io import voxel_limit

    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(line: str, status: int = 1) -> int:
        if args.traceback:
            traceback.print_exc()
        print(f"skullstrip {args.command}: {line}", file=sys.stderr)
        return status

    try:
        if str(getattr(args, "model", "")).endswith(".keras"):  # predict, evaluate
            require_train_extra()
            _import_tensorflow_quietly()
        with voxel_limit(args.max_voxels):
            return int(args.func(args) or 0)
    except Interrupted as exc:  # preprocess: cleaned up, and says what it kept
        return fail(f"interrupted: {exc}", 128 + exc.signum)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except MemoryError as exc:  # load_scan's names the scan; numpy's says how much it wanted
        detail = _first_line(exc) if str(exc).strip() else ""
        if "out of memory" not in detail:
            detail = f"out of memory ({detail})" if detail else "out of memory"
        return fail(f"error: {detail}; free memory, or give it smaller inputs (see "
                    "--max-voxels)")
    except (SkullstripError, OSError, ValueError) as exc:
        message = _as_option(exc, args)
        if isinstance(exc, OSError) and not isinstance(exc, SkullstripError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror}"
        return fail(f"error: {message}")
    except ModuleNotFoundError as exc:  # TensorFlow/Keras (a .keras model) without [train]
        error = missing_extra(exc)
        if error is None:
            raise
        return fail(f"error: {error}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
