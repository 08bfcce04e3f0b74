"""End-to-end check of this project's bundles in a real MONAI Label server, in a separate environment.

``monailabel`` pins numpy<2 (through pydicom-seg), so it cannot share the project environment (numpy 2). This
script builds (or reuses) a venv with torch==2.13.0 from local disk and monailabel's pinned dependencies
(``tools/monailabel/requirements.txt``), copies each bundle into the model folder of a small MONAI Label app
(``tools/monailabel/app/main.py``, MONAI Label's own ``BundleInferTask``), starts ``monailabel start_server`` on
127.0.0.1 with a studies folder holding one sample image per bundle, waits for ``/info/``, runs
``POST /infer/<bundle>?image=<id>`` through the REST API, checks the returned image and stops the server.
Exit status 0 only when every bundle answered and passed its checks.

    python tools/monailabel_check.py                       # autoinpainting_tumor_segmentation
    python tools/monailabel_check.py --bundle bundles/ipa_medgan --bundle bundles/autoinpainting_tumor_segmentation
    python tools/monailabel_check.py --all                 # every bundle of bundles/, one server
    python tools/monailabel_check.py --random-weights      # bundles without models/model.pt get a random init
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools" / "monailabel"
DEFAULT_VENV = Path.home() / ".cache" / "medinpaint" / "monailabel-venv"
MONAILABEL_VERSION = "0.8.5"
TORCH_VERSION = "2.13.0"
# bundle -> (datalist, image key, {input name: datalist key} sent as infer params, count key): the sample is the
# first test entry whose count key (pixels of the tumour/lesion) is at least 16 (any entry if None)
SAMPLES = {
    "autoinpainting_tumor_segmentation": ("datalist_2d.json", "image_tumour", {}, "tumour_pixels"),
    "ipa_medgan": ("datalist_2d.json", "image", {}, None),
    "mask_optimized_object_removal": ("datalist_2d.json", "image_tumour", {"hint": "label_tumour"}, "tumour_pixels"),
    "shape_aware_mask_inpainting": ("datalist_2d.json", "image_ms", {"mask": "label_ms"}, "ms_pixels"),
    "blind_lesion_inpainting_3d": ("datalist_3d.json", "image_ms", {}, None),
}
# bundle folder contents MONAI Label needs; run outputs (eval/, runs/) are left behind
BUNDLE_PARTS = ("configs", "scripts", "models", "docs", "LICENSE")


def log(msg: str) -> None:
    print(msg, flush=True)


def run_nice(cmd: list[str], **kwargs) -> None:
    """Run a command at low priority (shared machine); raise CalledProcessError if it fails."""
    subprocess.run(["nice", "-n", "10", *cmd], check=True, **kwargs)


def ensure_venv(venv: Path) -> Path:
    """Build or update the MONAI Label venv unless it was built from this very requirements file; returns its python."""
    python = venv / "bin" / "python"
    requirements = TOOLS / "requirements.txt"
    wanted = hashlib.sha256(requirements.read_bytes() + MONAILABEL_VERSION.encode()).hexdigest()
    stamp = venv / "medinpaint-requirements.sha256"
    probe = "import monailabel, monai, numpy, torch; print(monailabel.__version__, monai.__version__, numpy.__version__, torch.__version__)"
    if not (stamp.exists() and stamp.read_text(encoding="utf-8").strip() == wanted and python.exists()):
        log(f"venv: {'updating' if python.exists() else 'building'} {venv} (several minutes)")
        if not python.exists():
            run_nice([sys.executable, "-m", "venv", str(venv)])
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as constraint:
            constraint.write(f"torch=={TORCH_VERSION}\n")
        env = {**os.environ, "PIP_CONSTRAINT": constraint.name}  # also reaches pip's isolated build environments
        pip = [str(python), "-m", "pip", "install", "-q"]
        try:
            run_nice([*pip, f"torch=={TORCH_VERSION}"], env=env)  # first: the CPU wheel on local disk
            run_nice([*pip, "-r", str(requirements)], env=env)
            run_nice([*pip, "--no-deps", f"monailabel=={MONAILABEL_VERSION}"], env=env)
        finally:
            os.unlink(constraint.name)
        stamp.write_text(wanted + "\n", encoding="utf-8")
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    log(f"venv: {venv} (monailabel, monai, numpy, torch = {found.stdout.strip()})")
    return python


def sample_inputs(bundle_name: str, dataset_dir: Path, image_key: str | None) -> tuple[Path, dict[str, str]]:
    """The bundle's sample image and its extra inputs (absolute paths) from the first suitable test entry."""
    datalist, key, extra, count = SAMPLES.get(bundle_name, ("datalist_2d.json", None, {}, None))
    key = image_key or key
    if key is None:
        raise SystemExit(f"no default sample image for bundle {bundle_name}: pass --image-key")
    entries = json.loads((dataset_dir / datalist).read_text(encoding="utf-8"))["test"]
    entry = next(e for e in entries if count is None or e[count] >= 16)
    return dataset_dir / entry[key], {name: str(dataset_dir / entry[k]) for name, k in extra.items()}


def write_random_weights(bundle: Path) -> None:
    """models/model.pt = state dict of a seeded random init of inference.json's network_def (a stand-in only)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", instantiate=True)
    (bundle / "models").mkdir(exist_ok=True)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, timeout: float, form: dict | None = None) -> tuple[int, bytes, dict]:
    """One request; a POST sends ``form`` url-encoded (MONAI Label's infer endpoint reads ``params`` from it)."""
    data = urllib.parse.urlencode(form or {}).encode() if method == "POST" else None
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def wait_for_info(base: str, server: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with status {server.returncode} before answering /info/")
        with contextlib.suppress(OSError):
            status, body, _ = http("GET", f"{base}/info/", timeout=10)
            if status == 200:
                return json.loads(body)
        time.sleep(2)
    raise TimeoutError(f"no answer from {base}/info/ within {timeout:.0f} s")


def load_array(path: Path):
    import nibabel as nib
    import numpy as np

    return np.asarray(nib.load(path).dataobj)


def check_answer(result: Path, image: Path, reference: Path, metadata: dict) -> tuple[list[str], list[str]]:
    """(problems, notes) of the returned image against the input and the bundle's own inference of it.

    Problems: spatial size differs from the input's, non-finite values, values outside ``channel_def`` (for a
    segmentation output), or voxels that differ from ``reference`` (``monai.bundle run`` of the same bundle copy
    on the same file, in the project environment). Singleton axes are ignored in the comparison and reported
    as a note: MONAI Label 0.8.5 keeps the channel axis of a 2D prediction (``Restored`` drops it only above 3
    dimensions), so a 2D answer comes back as a ``(1, H, W)`` volume.
    """
    import nibabel as nib
    import numpy as np

    pred, expected = load_array(result), load_array(reference)
    input_shape = nib.load(image).shape
    problems, notes = [], []
    if pred.squeeze().shape != tuple(s for s in input_shape if s != 1):
        problems.append(f"spatial size {pred.shape} != input {input_shape}")
    elif pred.shape != input_shape:
        notes.append(f"file shape {pred.shape} vs input {input_shape} (singleton axis added by MONAI Label)")
    if not np.isfinite(pred).all():
        problems.append("non-finite values")
    output = next(iter(metadata["network_data_format"]["outputs"].values()))
    segmentation = output.get("format") == "segmentation"
    if segmentation:
        allowed = {int(k) for k in output.get("channel_def", {})}
        found = {float(v) for v in np.unique(pred)}
        if not found <= allowed:
            problems.append(f"label values {sorted(found)} not within channel_def {sorted(allowed)}")
    if pred.squeeze().shape != expected.squeeze().shape:
        problems.append(f"shape {pred.shape} != the bundle's own output {expected.shape}")
    else:
        differ = int((~np.isclose(pred.squeeze(), expected.squeeze(), rtol=1e-4, atol=1e-5)).sum())
        if differ and segmentation:
            a, b = pred.squeeze() > 0, expected.squeeze() > 0
            dice = 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)
            problems.append(f"{differ} of {pred.size} voxels differ from the bundle's own inference (Dice {dice:.4f})")
        elif differ:
            problems.append(f"{differ} of {pred.size} voxels differ from the bundle's own inference")
        else:
            notes.append(f"equal to `monai.bundle run` of the bundle on the same file ({pred.size} voxels)")
    return problems, notes


def saved_postfix(bundle: Path, key: str) -> str:
    """``output_postfix`` of the postprocessing ``SaveImaged`` that writes ``key`` (``key`` itself if none)."""
    config = json.loads((bundle / "configs" / "inference.json").read_text(encoding="utf-8"))
    for transform in config.get("postprocessing", {}).get("transforms", []):
        if isinstance(transform, dict) and transform.get("_target_", "").endswith("SaveImaged") and transform.get("keys") in (key, [key]):
            postfix = transform.get("output_postfix", key)
            return config[postfix[1:]] if postfix.startswith("@") else postfix
    return key


def bundle_reference(bundle: Path, entry: dict[str, str], output_dir: Path, postfix: str) -> Path:
    """The bundle's own inference of the datalist ``entry`` (project environment), as the harness runs it."""
    image = Path(entry["image"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
               "--bundle_root", str(bundle), "--output_dir", str(output_dir), "--datalist", repr([entry])]
    done = subprocess.run(["nice", "-n", "10", *command], cwd=bundle, env=env, capture_output=True, text=True)
    found = sorted(output_dir.glob(f"{image.name.split('.')[0]}_{postfix}.nii*"))
    if done.returncode != 0 or not found:
        raise RuntimeError(f"`monai.bundle run` of {bundle.name} failed (status {done.returncode}):\n{done.stderr[-3000:]}")
    return found[0]


def describe(result: Path) -> str:
    import nibabel as nib
    import numpy as np

    pred = np.asarray(nib.load(result).dataobj)
    values, counts = np.unique(pred, return_counts=True)
    if len(values) <= 10:
        spread = ", ".join(f"{v:g}: {c}" for v, c in zip(values.tolist(), counts.tolist()))
        return f"shape {pred.shape} {pred.dtype}, value counts {{{spread}}}"
    return f"shape {pred.shape} {pred.dtype}, range [{pred.min():.4g}, {pred.max():.4g}], mean {pred.mean():.4g}"


def server_error(server_log: Path, start: int, wait: float = 10.0) -> str:
    """The first ``SomeError: message`` line the server logged after byte ``start`` (the cause of an HTTP 500).

    The server sends the 500 before it logs the traceback, so this waits up to ``wait`` seconds for it."""
    deadline = time.monotonic() + wait
    while True:
        with open(server_log, "rb") as log_file:
            log_file.seek(start)
            lines = log_file.read().decode("utf-8", "replace").splitlines()
        errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
        if errors or time.monotonic() > deadline:
            return errors[0] if errors else "(no exception line in the server log)"
        time.sleep(0.5)


def infer_and_check(base: str, name: str, app: Path, studies: Path, work: Path, image: tuple[str, Path],
                    weights: str, dataset_dir: Path, server_log: Path, timeout: float) -> bool:
    """POST /infer/<name> on the bundle's sample image, save the answer and check it; True if it passed."""
    image_id, source, extra = image
    log(f"infer {name}: weights {weights}")
    params = f" params={json.dumps({k: str(Path(v).relative_to(dataset_dir)) for k, v in extra.items()})}" if extra else ""
    log(f"  POST /infer/{name}?image={image_id}&output=image{params}   (sample {source.relative_to(dataset_dir)})")
    t0, log_start = time.monotonic(), server_log.stat().st_size
    status, body, headers = http("POST", f"{base}/infer/{name}?image={image_id}&output=image", timeout=timeout,
                                 form={"params": json.dumps(extra)})
    if status != 200:
        log(f"  FAIL HTTP {status} {body[:200].decode('utf-8', 'replace')}; server: {server_error(server_log, log_start)}")
        return False
    result = work / f"{image_id}_result.nii.gz"
    result.write_bytes(body)
    log(f"  HTTP 200 in {time.monotonic() - t0:.1f} s, {len(body)} bytes ({headers.get('content-type')})")
    log(f"  answer: {describe(result)}")
    copy = app / "model" / name
    metadata = json.loads((copy / "configs" / "metadata.json").read_text(encoding="utf-8"))
    postfix = saved_postfix(copy, next(iter(metadata["network_data_format"]["outputs"])))
    reference = bundle_reference(copy, {"image": str(studies / f"{image_id}.nii.gz"), **extra}, work / "direct" / name, postfix)
    problems, notes = check_answer(result, source, reference, metadata)
    for line in [f"  note: {n}" for n in notes] + [f"  FAIL {p}" for p in problems]:
        log(line)
    if not problems:
        log("  PASS")
    return not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", type=Path,
                        help="bundle folder (repeatable); default bundles/autoinpainting_tumor_segmentation")
    parser.add_argument("--all", action="store_true", help="every bundle of bundles/ (in one server)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--random-weights", action="store_true",
                        help="give a bundle without models/model.pt a seeded random init (a plumbing check only)")
    parser.add_argument("--image-key", help="datalist key of the sample image (default per bundle)")
    parser.add_argument("--workdir", type=Path, help="app/studies/logs folder (default: a temporary one, removed)")
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument("--infer-timeout", type=float, default=900.0)
    args = parser.parse_args()
    if args.all:
        args.bundle = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs" / "inference.json").exists())
    bundles = [b.resolve() for b in (args.bundle or [REPO / "bundles" / "autoinpainting_tumor_segmentation"])]

    python = ensure_venv(args.venv)
    import common.data

    dataset_dir = Path(common.data.build_sample_data())
    work = args.workdir or Path(tempfile.mkdtemp(prefix="monailabel-check-"))
    app, studies = work / "app", work / "studies"
    (app / "model").mkdir(parents=True, exist_ok=True)
    studies.mkdir(parents=True, exist_ok=True)
    shutil.copy(TOOLS / "app" / "main.py", app / "main.py")

    images, weights = {}, {}
    for bundle in bundles:
        name = bundle.name
        target = app / "model" / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for part in BUNDLE_PARTS:
            if (bundle / part).is_dir():
                shutil.copytree(bundle / part, target / part)
            elif (bundle / part).exists():
                shutil.copy(bundle / part, target / part)
        if (target / "models" / "model.pt").exists():
            weights[name] = f"{bundle / 'models' / 'model.pt'}"
        elif args.random_weights:
            write_random_weights(target)
            weights[name] = "RANDOM INIT (no models/model.pt in the bundle; --random-weights)"
        else:
            log(f"FAIL {name}: {bundle / 'models' / 'model.pt'} does not exist (MONAI Label needs it; "
                "train the demo weights or pass --random-weights)")
            return 1
        source, extra = sample_inputs(name, dataset_dir, args.image_key)
        image_id = f"{name}__" + str(source.relative_to(dataset_dir)).split(".")[0].replace(os.sep, "_")
        shutil.copy(source, studies / f"{image_id}.nii.gz")
        images[name] = (image_id, source, extra)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = work / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           # what activating the venv does: its `monailabel` launcher runs the `python` found on PATH
           "PATH": os.pathsep.join([str(python.parent), os.environ.get("PATH", "")]), "VIRTUAL_ENV": str(python.parents[1]),
           "PYTHONUNBUFFERED": "1",  # the log holds the traceback by the time the HTTP 500 arrives
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1")}
    command = ["nice", "-n", "10", str(python.parent / "monailabel"), "start_server", "--app", str(app),
               "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port),
               "--conf", "models", ",".join(b.name for b in bundles)]
    log(f"server: {' '.join(command[3:])}")
    passed, info = 0, None
    started = time.monotonic()
    with open(server_log, "w", encoding="utf-8") as server_out:
        server = subprocess.Popen(command, stdout=server_out, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
        try:
            info = wait_for_info(base, server, args.startup_timeout)
            log(f"server: /info/ answered after {time.monotonic() - started:.0f} s; "
                f"app '{info.get('name')}'")
            for name, model in info.get("models", {}).items():
                log(f"  model {name}: type={model.get('type')} dimension={model.get('dimension')} "
                    f"labels={model.get('labels')}")
            status, body, _ = http("GET", f"{base}/datastore/?output=all", timeout=30)
            log(f"datastore: {sorted(json.loads(body).get('objects', {}))}")
            for bundle in bundles:
                try:
                    passed += infer_and_check(base, bundle.name, app, studies, work, images[bundle.name],
                                              weights[bundle.name], dataset_dir, server_log, args.infer_timeout)
                except Exception as error:  # this bundle failed; go on with the others
                    log(f"  FAIL {type(error).__name__}: {error}")
        except Exception as error:  # report, then stop the server below
            log(f"FAIL {type(error).__name__}: {error}")
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
            log(f"server: stopped (exit status {server.returncode}); log {server_log}")
    if info is None:  # the server never answered: show why
        tail = server_log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
        log("server log tail:\n" + "\n".join(tail))
    log(f"RESULT: {'PASS' if passed == len(bundles) else 'FAIL'} ({passed}/{len(bundles)} bundles passed)")
    if not args.workdir and passed == len(bundles):
        shutil.rmtree(work)
    return 0 if passed == len(bundles) else 1

if __name__ == "__main__":
    sys.exit(main())
