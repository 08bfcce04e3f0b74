"""Minimal MONAI Label app serving this project's bundles through MONAI Label's own ``BundleInferTask``.

MONAI Label's sample ``monaibundle`` app is fetched from GitHub (``monailabel apps --download``), which is not
reachable offline, so this app does the same with no downloads: every folder under ``<app>/model/`` (or the
comma-separated names given with ``--conf models a,b``) is one MONAI bundle, exposed as one infer model.
Runs inside the separate MONAI Label environment built by ``tools/monailabel_check.py``.
"""

import logging
import os
import sys

import torch
from monailabel.interfaces.app import MONAILabelApp

logger = logging.getLogger(__name__)
_TORCHVISION_SCHEMAS = []  # keeps the schema library below registered for the server's lifetime


def import_torchvision_without_its_ops() -> None:
    """Make ``import torchvision`` work where its C++ ops cannot load.

    PyPI holds only the CUDA build of torchvision for Linux; beside the CPU torch its ``_C`` extension fails to load
    (it links libtorch_cuda), which torchvision tolerates except for two unguarded ``register_fake`` calls on
    ``torchvision::nms``/``qnms``, so the import raises. MONAI Label imports torchvision only for ``make_grid`` and
    ``save_image`` (``monailabel.transform.post``). Declaring the two op schemas lets the import finish; the ops stay
    unusable (torchvision.ops raises "Couldn't load custom C++ ops"), and none of them is on the bundle infer path.
    """
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms does not exist" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        schemas = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            schemas.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_SCHEMAS.append(schemas)
        import torchvision  # noqa: F401

        logger.warning("torchvision C++ ops unavailable (CUDA build beside CPU torch); imported without them")


import_torchvision_without_its_ops()
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: E402  (imports torchvision)


class MyApp(MONAILabelApp):
    """Exposes each bundle of ``<app_dir>/model`` as a MONAI Label infer task (no training, no downloads)."""

    def __init__(self, app_dir, studies, conf):
        self.model_dir = os.path.join(app_dir, "model")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medinpaint",
            description="medinpaint bundles served by MONAI Label's BundleInferTask",
        )

    def bundle_paths(self) -> dict[str, str]:
        """Bundle name -> folder, from ``--conf models`` or every folder of ``model/``; an unknown name is an error."""
        names = [m.strip() for m in self.conf.get("models", "").split(",") if m.strip()]
        if not names:
            names = sorted(d for d in os.listdir(self.model_dir) if os.path.isdir(os.path.join(self.model_dir, d)))
        paths = {n: os.path.join(self.model_dir, n) for n in names}
        missing = [p for p in paths.values() if not os.path.isdir(p)]
        if missing:
            raise FileNotFoundError(f"bundle folder(s) not found: {missing}")
        return paths

    def init_infers(self):
        infers = {}
        for name, path in self.bundle_paths().items():
            task = BundleInferTask(path, self.conf)
            if not task.is_valid():
                # BundleInferTask logs why (no inference.json, no models/model.pt or model.ts)
                raise RuntimeError(f"MONAI Label rejected bundle {name} at {path}; see the log above")
            infers[name] = task
            logger.info(f"+++ bundle {name}: type={task.type} labels={task.labels} dimension={task.dimension}")
        return infers
