"""Options of a study (``btnet reproduce`` / ``btnet demo``), with the CPU-scale defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

# The stages ``--stages`` can pick, per study: table1 (and the demo, table1 restricted to three
# models) trains one model per stage, so a long run can be split; the other studies need all of
# theirs and always run them. trunk_hr_ft exists only with mr_init=hr.
TABLE1_STAGES = ("trunk_hr", "trunk_hr_ft", "trunk_mr_v1", "trunk_mr_v2", "trunk_mr_v3", "mm",
                 "btnet")
STUDY_STAGES = {
    "table1": TABLE1_STAGES,
    "demo": ("trunk_hr", "trunk_mr_v1", "btnet"),
    "labelfree": ("trunk_hr", "trunk_mr_v1", "btnet_hr_trunk", "btnet", "labelfree",
                  "labelfree_own", "labelfree_mse"),
}


MR_INITS = ("scratch", "hr")

# Named branch recipes (``--branch-recipe``): switches of the branch config, merged under a
# study's own (Table 3's rows, Table 4's losses keep theirs). "paper" is the paper's recipe:
# CurricularFace through the trunk's frozen classifier (BCT) plus branch distillation (0.5).
# The others were chosen by the ablation of docs/results.md ("A branch recipe that beats its
# trunk"), benchmarks/branch_recipe_ablation.py.
BRANCH_RECIPES: dict[str, dict] = {
    "paper": {},
    # + the embedding term (MSE towards the trunk's embedding of the S-pixel face) and an own
    # trainable copy of the shared tail for the 7-pixel path, the two levers that moved 56&7
    # and 7&7 most in the ablation (the tail copy doubles what the 7-pixel path stores)
    "extended": {"embed_distill_weight": 1.0, "untie": [7]},
}


@dataclass
class StudyOptions:
    """Everything a study depends on; each stage hashes the part it uses into its cache key."""

    study: str = "table1"
    out: str = ""  # study folder (its report/); default runs/<study>
    cache: str = ""  # stage cache shared by studies; default: the study folder itself
    data: str = "builtin"  # "builtin" or a data root holding lfw/ and celeba/ (../shared/data)
    canonical: int = 56  # S: 56 on CPU (branches 7/14/28 stay meaningful), 112 on a GPU
    arch: str = "iresnet18"
    width: int = 16
    embedding_size: int = 128
    resolutions: list[int] = field(default_factory=lambda: [7, 14, 28])
    trunk_epochs: float = 8.0
    branch_epochs: float = 4.0
    mm_epochs: float = 8.0
    batch_size: int = 128
    lr: float = 0.1
    # how phi_mr trunks start: "scratch" (random init, trunk_epochs) or "hr" (the phi_hr
    # trunk fine-tuned with the phi_mr recipe for mr_finetune_epochs at mr_finetune_lr)
    mr_init: str = "scratch"
    mr_finetune_epochs: float = 4.0
    mr_finetune_lr: float = 0.01
    trunk_loss: str = "curricularface"
    branch_loss: str = "curricularface"  # the paper's influence loss
    branch_recipe: str = "paper"  # a key of BRANCH_RECIPES
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    progress: bool = True
    stages: list[str] | None = None  # None: every stage; a subset of STUDY_STAGES[study]
    # built-in faces (data == "builtin")
    builtin_train_ids: int = 300
    builtin_per_id: int = 16
    builtin_test_ids: int = 100
    builtin_test_per_id: int = 8
    # evaluation
    # pairs in the verification set; None: the source's default (real faces 20,000: devtest
    # pairs + extra; built-in 3,000)
    eval_pairs: int | None = None
    flip: bool = False

    def __post_init__(self) -> None:
        # 6 and 6.0 epochs are one training: stage keys hash the JSON of these numbers
        for f in dataclasses.fields(self):
            if f.type == "float" and isinstance(getattr(self, f.name), int):
                setattr(self, f.name, float(getattr(self, f.name)))
        if self.mr_init not in MR_INITS:
            raise ValueError(f"mr_init must be one of {', '.join(MR_INITS)}, not {self.mr_init!r}")
        if self.branch_recipe not in BRANCH_RECIPES:
            raise ValueError(f"branch_recipe must be one of {', '.join(BRANCH_RECIPES)}, "
                             f"not {self.branch_recipe!r}")
        if self.stages is not None:
            self._check_stages()

    def selectable_stages(self) -> tuple[str, ...]:
        """The stages of this study that ``stages`` may name (none: it runs all of them)."""
        names = STUDY_STAGES.get(self.study, ())
        return tuple(s for s in names if s != "trunk_hr_ft" or self.mr_init == "hr")

    def _check_stages(self) -> None:
        """A stage the study does not use would be silently skipped: refuse it instead."""
        allowed = self.selectable_stages()
        if not allowed:
            picks = "; ".join(f"{k}: {', '.join(v)}" for k, v in STUDY_STAGES.items())
            raise ValueError(f"study {self.study!r} always runs all its stages, so it takes no "
                             f"stage subset (studies that do: {picks})")
        if not self.stages:
            raise ValueError(f"empty stage subset; study {self.study!r} has stages "
                             f"{', '.join(allowed)}")
        unused = [s for s in self.stages if s not in allowed]
        if unused:
            hint = (" (trunk_hr_ft exists only with mr_init=hr)"
                    if "trunk_hr_ft" in unused and self.study in STUDY_STAGES else "")
            raise ValueError(f"study {self.study!r} does not use stage(s) {', '.join(unused)}"
                             f"{hint}; its stages: {', '.join(allowed)}")

    def mr_trunk_recipe(self) -> str:
        """One line for reports: how the phi_mr trunks (and so BTNet's trunk) were trained."""
        if self.mr_init == "hr":
            return (f"phi_mr trunks: the phi_hr trunk ({self.trunk_epochs:g} epochs) fine-tuned "
                    f"{self.mr_finetune_epochs:g} epochs with the phi_mr recipe at lr "
                    f"{self.mr_finetune_lr:g} (mr_init=hr).")
        return f"phi_mr trunks: trained from scratch, {self.trunk_epochs:g} epochs (mr_init=scratch)."

    def branch_recipe_line(self) -> str:
        """One line for reports: how BTNet's branches were trained."""
        switches = BRANCH_RECIPES[self.branch_recipe]
        extra = ", ".join(f"{k}={v}" for k, v in switches.items())
        return (f"BTNet branches: {self.branch_epochs:g} epochs, recipe '{self.branch_recipe}'"
                + (f" ({extra})." if extra else " (BCT + branch distillation 0.5, the paper's)."))

    @property
    def folder(self) -> Path:
        return Path(self.out or f"runs/{self.study}")

    @property
    def cache_folder(self) -> Path:
        return Path(self.cache) if self.cache else self.folder

    def model_params(self) -> dict:
        return {"arch": self.arch, "input_size": self.canonical, "width": self.width,
                "embedding_size": self.embedding_size}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def wants(self, stage: str) -> bool:
        return self.stages is None or stage in self.stages
