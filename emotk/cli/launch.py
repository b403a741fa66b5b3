"""``emotk launch``: job scripts for clusters (``emotk launch slurm -- ser train -c c.yaml --resume``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import OverwriteOpt, emit

app = typer.Typer(help="Write job scripts that run emotk commands on clusters (SLURM + torchrun).",
                  no_args_is_help=True)


@app.command(
    "slurm",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def slurm(
    command: List[str] = typer.Argument(
        ..., help="The emotk command to run, after --, e.g. -- ser train -c c.yaml --resume.", metavar="COMMAND..."
    ),
    nodes: int = typer.Option(1, "--nodes", "-N", help="Nodes (one torchrun per node)."),
    gpus_per_node: int = typer.Option(1, "--gpus-per-node", "-G", help="GPUs = training processes per node."),
    cpus_per_task: int = typer.Option(8, "--cpus-per-task", help="CPU cores per node's torchrun."),
    time: str = typer.Option("24:00:00", "--time", "-t", help="Time limit, [D-]HH:MM:SS."),
    partition: Optional[str] = typer.Option(None, "--partition", "-p", help="SLURM partition."),
    account: Optional[str] = typer.Option(None, "--account", "-A", help="SLURM account."),
    job_name: str = typer.Option("emotk", "--job-name", "-J", help="Job name."),
    mem: Optional[str] = typer.Option(None, "--mem", help="Memory per node, e.g. 64G."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the script here instead of stdout."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Print an sbatch script that runs an emotk command with srun + torchrun on NODES x GPUS processes.

    SLURM sends USR1 120 s before the time limit; training then checkpoints, exits with code 3 and the job
    requeues itself. Put --resume in the command so the requeued job continues from the checkpoint.
    """
    from emotk.core.io import atomic_write_text, check_writable
    from emotk.train.launch import slurm_script

    script = slurm_script(list(command), nodes=nodes, gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task,
                          time=time, partition=partition, account=account, job_name=job_name, mem=mem)
    if out is None:
        emit({"script": script, "processes": nodes * gpus_per_node}, script)
        return
    check_writable(out, overwrite)
    atomic_write_text(out, script)
    out.chmod(0o755)
    emit({"script_path": str(out), "processes": nodes * gpus_per_node},
         f"wrote {out} ({nodes * gpus_per_node} processes); submit with: sbatch {out}")
