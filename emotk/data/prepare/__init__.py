"""Dataset importers: ``emotk data prepare DATASET ROOT -o OUT``.

Each importer is a module exposing ``DATASET`` (its name), ``DESCRIPTION`` (one line) and
``prepare(root: Path, opts: PrepareOptions) -> PrepareResult``. Modules are imported lazily.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from emotk.errors import UsageError

IMPORTERS: dict[str, str] = {
    "msp-podcast": "emotk.data.prepare.msp_podcast",
    "iemocap": "emotk.data.prepare.iemocap",
    "meld": "emotk.data.prepare.meld",
    "cmu-mosi": "emotk.data.prepare.cmu_mosi",
    "daic-woz": "emotk.data.prepare.daic_woz",
    "ravdess": "emotk.data.prepare.ravdess",
    "cafe": "emotk.data.prepare.cafe",
    "emodb": "emotk.data.prepare.emodb",
    "msp-improv": "emotk.data.prepare.msp_improv",
    "esd": "emotk.data.prepare.esd",
    "crema-d": "emotk.data.prepare.crema_d",
    "timit": "emotk.data.prepare.timit",
    "generic": "emotk.data.prepare.generic",
    "conversations-csv": "emotk.data.prepare.conversations_csv",
}


def get_importer(name: str) -> ModuleType:
    key = name.lower().replace("_", "-")
    if key not in IMPORTERS:
        from emotk.core.suggest import did_you_mean

        raise UsageError(f"unknown dataset '{name}'{did_you_mean(key, IMPORTERS)}; known: {', '.join(IMPORTERS)}")
    return importlib.import_module(IMPORTERS[key])
