"""Label-free branches (``branch.objective: distill``): adapt a recogniser to tiny faces from
images alone.

Why it works without identities: BTNet's trunk is frozen, so a branch only has to make path r
reproduce, from the r-pixel face, what the trunk computes from the S-pixel face of the same
image. The trunk is the teacher for both signals the paper uses next to its classifier loss:

* branch distillation: MSE between branch r's output and the trunk's coupling-unit feature;
* an embedding term: path r's embedding of the r-pixel face against the trunk's embedding of
  the S-pixel face (``branch.embed_loss``: ``cosine`` or ``mse``).

No classifier is built and labels are never read, so any folder of face crops will do (a flat
folder, identity folders, ``.rec``, the built-in faces). Everything else is BTNet's branch
recipe: per-resolution BatchNorm, frozen (or untied) trunk, only each path's own tensors stored.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from btnet.losses import branch_distillation, embedding_loss
from btnet.models import BTNet
from btnet.training.config import Config

log = logging.getLogger(__name__)


class LabelFreeBranchTask(nn.Module):
    """Distillation of every branch towards the frozen trunk; ``batch["label"]`` is ignored.

    The teacher pass runs the trunk in eval mode without gradients, so the trunk's running
    BatchNorm statistics never move; the student pass runs through path r's own BatchNorms.
    """

    def __init__(self, model: BTNet, resolutions: list[int], distill_weight: float,
                 embed_weight: float, embed_loss: str = "mse"):
        super().__init__()
        self.model = model
        self.resolutions = [int(r) for r in resolutions]
        self.distill_weight = float(distill_weight)
        self.embed_weight = float(embed_weight)
        self.embed_loss_name = embed_loss
        self.embed_loss = embedding_loss(embed_loss)
        if self.distill_weight <= 0 and self.embed_weight <= 0:
            raise ValueError("label-free branches need distill_weight > 0 or embed_weight > 0")

    def train(self, mode: bool = True) -> LabelFreeBranchTask:
        super().train(mode)
        self.model.trunk.eval()  # the teacher: its BatchNorm statistics never move
        return self

    @torch.no_grad()
    def teacher(self, x_s: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
        """The trunk's coupling features (per r) and embedding of the S-pixel faces, in one
        pass (features taken on the way)."""
        return self.model.trunk_targets(x_s, self.resolutions, embedding=self.embed_weight > 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats, t_emb = self.teacher(batch["x"])
        total = torch.zeros((), device=batch["x"].device)
        out: dict[str, torch.Tensor] = {}
        for r in self.resolutions:
            path = self.model.branch_path(r)
            branch_out = path.branch(batch[f"x{r}"])
            loss_r = torch.zeros((), device=total.device)
            if self.distill_weight > 0:
                dist = branch_distillation(branch_out, feats[r])
                loss_r = loss_r + self.distill_weight * dist
                out[f"distill{r}"] = dist.detach()
            if t_emb is not None:
                edist = self.embed_loss(path.tail(branch_out), t_emb)
                loss_r = loss_r + self.embed_weight * edist
                out[f"edistill{r}"] = edist.detach()
            total = total + loss_r
        out["loss"] = total
        return out


def build_labelfree_recipe(cfg: Config, dataset, resolutions: list[int]):
    """The branch recipe with ``branch.objective: distill`` (see the module docstring)."""
    from btnet.inference.encoders import MultiResolutionEncoder
    from btnet.io.model_store import save_btnet
    from btnet.training.recipes import (
        Recipe,
        _freeze_all_but,
        branch_meta,
        check_branch_pairing,
        make_branch_sample,
        trainable_paths,
    )

    bc = cfg.branch
    trunk, _, source = check_branch_pairing(cfg, dataset, resolutions)
    geometry = trunk.coupling_geometry()
    couplings = {r: geometry.candidates(r)[bc.coupling_offset] for r in resolutions}
    model = BTNet(trunk, resolutions, pretrained_branches=bc.pretrained, couplings=couplings)
    trainable = trainable_paths(model, bc, resolutions)
    embed_weight = 1.0 if bc.embed_distill_weight is None else bc.embed_distill_weight
    task = LabelFreeBranchTask(model, resolutions, bc.distill_weight, embed_weight, bc.embed_loss)
    _freeze_all_but(task, trainable)
    log.info("label-free branches %s on %s: distill %g, embedding %s x %g, %d training images "
             "(labels ignored)", resolutions, source, bc.distill_weight, bc.embed_loss,
             embed_weight, len(dataset))

    def save(out):
        meta = branch_meta(cfg, source, embed_weight, objective="distill")
        meta.pop("loss", None)  # no margin loss was used
        return save_btnet(model, out, meta=meta)

    return Recipe(
        "branch" + ("" if len(resolutions) > 1 else str(resolutions[0])), task, dataset,
        make_branch_sample(cfg.model.input_size, resolutions, cfg.data.flip, bc.degrade),
        save, lambda: MultiResolutionEncoder(model, name=cfg.run_name()),
    )
