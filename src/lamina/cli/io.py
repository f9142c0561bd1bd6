"""`lamina merge`, `lamina export-peft`, `lamina import-peft`: adapter folders in, model/adapter folders out."""

from __future__ import annotations

from pathlib import Path

import typer

from lamina.cli.app import command


def _quiet() -> None:
    """No per-tensor progress bars from transformers: the commands print what they did."""
    from transformers.utils import logging

    logging.disable_progress_bar()


@command("merge")
def merge(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="lamina adapter folder (design.json + adapter.safetensors)"),
    output: Path = typer.Option(..., "--output", "-o", help="new folder for the merged Hugging Face model"),
    strict: bool = typer.Option(False, "--strict", help="refuse (exit 2) when some parts cannot be merged"),
    base: str | None = typer.Option(None, "--base", help="base model id or folder (default: the one in design.json)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing merged-model folder"),
):
    """Merge an adapter into its base model and write a plain Hugging Face model folder.

    Parts that cannot be merged (adapters, prefix, prompt, gated LoRA, BitFit on bias-less modules) are kept as a reduced lamina adapter in OUTPUT/lamina-adapter, or refused with --strict."""
    from lamina.export import export_merged
    from lamina.io import read_info
    from lamina.outputs import check_output_folder, replace_folder

    _quiet()
    info = read_info(adapter)
    named = info.get("base_model_name_or_path")
    check_output_folder(output, "merged", inputs=(adapter, base, named), overwrite=overwrite)
    if base or named:  # before the base loads: the tensors, and the base's config against the trained-on one
        from lamina.evaluate import check_adapter

        check_adapter(adapter, info, base or named)
    result = replace_folder(output, lambda out: export_merged(adapter, out, base=base, strict=strict))
    typer.echo(f"merged model written to {result['output']}" + (" (with tokenizer)" if result["tokenizer"] else ""))
    for part in result["merged"]:
        typer.echo(f"  merged: {part}")
    if result["remaining"] is not None:
        typer.echo(f"not mergeable, kept as a lamina adapter in {result['remaining']} (load it on the merged model):")
        for part in result["kept"]:
            typer.echo(f"  kept: {part}")


@command("export-peft")
def export_peft(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="lamina adapter folder"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for adapter_config.json + adapter_model.safetensors"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing PEFT adapter folder"),
):
    """Write a LoRA(-plus-head) lamina adapter as a Hugging Face PEFT LoRA adapter."""
    from lamina import io as lamina_io
    from lamina.adapter_checks import check_finite
    from lamina.outputs import check_output_folder
    from lamina.peft_format import export_peft as run

    check_output_folder(output, "peft", inputs=(adapter,), overwrite=overwrite)
    info = lamina_io.read_info(adapter)
    check_finite(lamina_io.read_tensors(adapter, info), Path(adapter) / lamina_io.TENSOR_FILE)

    typer.echo(f"PEFT LoRA adapter written to {run(adapter, output)}")


@command("import-peft")
def import_peft(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="PEFT LoRA adapter folder"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for the lamina adapter"),
    base: str | None = typer.Option(None, "--base", help="base model id or folder (default: base_model_name_or_path)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing lamina adapter folder"),
):
    """Turn a Hugging Face PEFT LoRA adapter into a lamina adapter folder."""
    from lamina.adapter_checks import check_peft_folder
    from lamina.outputs import check_output_folder, resolve_model
    from lamina.peft_format import import_peft as run

    base = check_peft_folder(adapter, base)
    check_output_folder(output, "adapter", inputs=(adapter, base), overwrite=overwrite)
    base = resolve_model(base) if base else None  # design.json records a local base by its absolute path

    _quiet()
    typer.echo(f"lamina adapter written to {run(adapter, output, base=base)}")
