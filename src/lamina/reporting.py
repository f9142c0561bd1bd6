"""`lamina train --report-to NAME`: the Hugging Face Trainer's own logging integrations, by their names
(tensorboard, wandb, mlflow, comet_ml, ...), checked before training starts.

TensorBoard writes into the run folder (`<output>/tensorboard`), not into the checkpoints folder the Trainer
would pick (it is removed when the run finishes). The other integrations log where they always do (their
service, or their own local folder)."""

from __future__ import annotations

from pathlib import Path

from lamina.errors import LaminaError

TENSORBOARD_DIR = "tensorboard"
EXTRAS = {"tensorboard": "lamina[tensorboard]"}


def known() -> list[str]:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return sorted(INTEGRATION_TO_CALLBACK)


def check(names) -> list[str]:
    """The integration names, each known to the Trainer and installed; [] for none. Accepts a list and
    comma-separated names ("tensorboard,mlflow")."""
    from transformers.integrations import get_available_reporting_integrations

    wanted = [n.strip().lower() for item in (names or []) for n in str(item).split(",") if n.strip()]
    if wanted in ([], ["none"]):
        return []
    available = get_available_reporting_integrations()
    if wanted == ["all"]:
        return list(available)
    alone = next((n for n in ("none", "all") if n in wanted), None)
    if alone:
        raise LaminaError(f"--report-to {','.join(wanted)}: '{alone}' stands alone; give it by itself or name the "
                          "integrations")
    for name in wanted:
        if name not in known():
            raise LaminaError(f"--report-to {name}: unknown integration (the Trainer's are: {', '.join(known())}, "
                              "or none / all)")
        if name not in available:
            how = EXTRAS.get(name, name)
            raise LaminaError(f"--report-to {name}: the {name} package is not installed (pip install '{how}')")
    return list(dict.fromkeys(wanted))


def callbacks(names: list[str], output: Path, is_main: bool) -> tuple[list[str] | str, list]:
    """(report_to for TrainingArguments, extra callbacks): TensorBoard is attached here with its folder in
    the run folder; the others go to the Trainer by name."""
    others = [n for n in names if n != "tensorboard"]
    if "tensorboard" not in names or not is_main:
        return others or "none", []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return others or "none", [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(output / TENSORBOARD_DIR)))]
