"""molkit: tested helpers behind the molkit notebooks (LLM-augmented molecular machine learning).

``import molkit`` is light (NumPy only); torch and transformers load when a model is used.
Layers: ``molkit.data`` -> ``molkit.chem`` -> ``molkit.models`` -> ``molkit.methods``;
``molkit.eval`` and ``molkit.viz`` beside them.
"""

from molkit.notebook import (
    Config,
    RunSettings,
    current,
    record,
    record_claims,
    record_frame,
    record_results,
    results,
    savefig,
    seed_everything,
    setup,
    show_table,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "RunSettings",
    "__version__",
    "current",
    "record",
    "record_claims",
    "record_frame",
    "record_results",
    "results",
    "savefig",
    "seed_everything",
    "setup",
    "show_table",
]
