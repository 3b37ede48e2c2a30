"""``btnet demo``: the whole method on built-in faces, on a laptop CPU, in a few minutes.

It is the ``table1`` study restricted to phi_hr, phi_mr (v1) and BTNet (branches on the phi_mr
trunk, the paper's configuration); ``btnet reproduce trunks`` compares trunks. The phi_mr trunk
is phi_hr fine-tuned with the phi_mr recipe (``mr_init="hr"``): trained from scratch at this
scale it settles on a weak resolution-invariant solution that loses 13 points at full
resolution (docs/results.md). Sizes are chosen so that the run finishes well
within ten minutes on two cores: IResNet-18 at width 16, canonical size 56, 3,200 generated
faces seen 10 times (phi_hr) plus 4 fine-tuning epochs (phi_mr), branches 16 epochs; 5,000
test pairs of 200 unseen identities, so that gains of about a point are resolved. The branches
train with the 'extended' recipe (the embedding term and an own tail for the 7-pixel path),
which the ablation on real faces found to beat the trunk by more than the paper's recipe at 56&7
and 7&7. Its untied 7-pixel tail needs the epochs: with 8 it fell behind the trunk at 56&7
on these faces (docs/results.md). ``btnet demo --branch-recipe paper --branch-epochs 8`` runs
the former demo's branches.
"""

from __future__ import annotations

from pathlib import Path

from btnet.pipeline.options import StudyOptions
from btnet.pipeline.studies import run_table1

DEMO_DEFAULTS = dict(
    study="demo",
    data="builtin",
    canonical=56,
    arch="iresnet18",
    width=16,
    embedding_size=128,
    trunk_epochs=10.0,
    mr_init="hr",
    mr_finetune_epochs=4.0,
    mr_finetune_lr=0.01,
    branch_epochs=16.0,
    branch_recipe="extended",
    batch_size=128,
    builtin_train_ids=200,
    builtin_per_id=16,
    builtin_test_ids=200,
    builtin_test_per_id=8,
    eval_pairs=5000,
)

DEMO_MODELS = ("phi_hr", "phi_mr_v1", "BTNet")


def demo_options(**overrides) -> StudyOptions:
    values = dict(DEMO_DEFAULTS)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return StudyOptions(**values)


def run_demo(opts: StudyOptions, echo=print) -> Path:
    return run_table1(opts, echo, models=DEMO_MODELS)
