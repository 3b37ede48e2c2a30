"""The paper's studies as pipelines of cached stages (``btnet reproduce`` and ``btnet demo``).

Every model is a training stage whose folder is the trainer's output folder (so an interrupted
stage resumes from its checkpoint); every evaluation is a stage of its own per model, so adding
a model to a study evaluates only that model. The report is rebuilt from the cached results on
each run.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from btnet.pipeline.options import StudyOptions
from btnet.pipeline.sources import DataSource, resolve_source
from btnet.pipeline.stages import StageCache, StageResult

log = logging.getLogger(__name__)


class Study:
    """Shared machinery: the cache, the data source and the stage builders."""

    def __init__(self, opts: StudyOptions, echo: Callable[[str], None] | None = None):
        self.opts = opts
        self.root = opts.folder
        self.root.mkdir(parents=True, exist_ok=True)
        self.echo = echo or (lambda msg: None)
        self.cache = StageCache(opts.cache_folder, on_event=self.echo)
        self.source: DataSource = resolve_source(opts)
        self._pairset = None
        self.models: dict[str, StageResult] = {}
        self._trunks: dict[str, StageResult] = {}

    # --- training stages ---------------------------------------------------------------------
    def _train_config(self, recipe: str, name: str, epochs: float, loss: str, extra: dict) -> dict:
        from btnet.training.config import merge_dicts  # lazily: it imports torch

        o = self.opts
        base = {
            "recipe": recipe,
            "name": name,
            "model": o.model_params(),
            "data": {"train": self.source.train_spec, "num_workers": 0},
            "loss": {"name": loss},
            "optim": {"lr": o.lr},
            "schedule": {"name": "poly", "warmup_epochs": min(1.0, epochs / 8)},
            "train": {"epochs": epochs, "batch_size": o.batch_size, "seed": o.seed,
                      "device": o.device, "num_threads": o.threads, "progress": o.progress,
                      "ckpt_every": 100, "log_every": 20},
        }
        return merge_dicts(base, extra)

    def _cache_view(self, cfg: dict) -> dict:
        """What of a training config decides its result (not its name, progress or threads),
        so equal trainings in different studies share one stage."""
        view = copy.deepcopy(cfg)
        view.pop("name", None)
        for k in ("progress", "num_threads", "device", "log_every", "ckpt_every"):
            view["train"].pop(k, None)
        view["data"]["source"] = self.source.train_params()
        return view

    def train_stage(self, name: str, cfg: dict, deps: list[StageResult] = ()) -> StageResult:
        from btnet.training.api import train

        def run(folder: Path) -> dict[str, Any]:
            result = train(cfg, output_dir=folder / "run", resume="auto")
            return {"model": str(result.model_path), "parts": {
                str(r): str(p.model_path) for r, p in result.parts.items()},
                "steps": result.steps, "metrics": result.metrics}

        return self.cache.run(f"train_{cfg['recipe']}", self._cache_view(cfg), run, deps, label=name)

    def trunk(self, sampler: str) -> StageResult:
        """A trunk trained from scratch with ``sampler``; asked twice, looked up once."""
        if sampler not in self._trunks:
            name = f"trunk_{sampler}"
            cfg = self._train_config("trunk", name, self.opts.trunk_epochs, self.opts.trunk_loss,
                                     {"data": {"sampler": sampler}})
            self._trunks[sampler] = self.train_stage(name, cfg)
        return self._trunks[sampler]

    def mr_trunk(self, version: str = "v1") -> StageResult:
        """The phi_mr trunk of ``version`` (v1, v2, v3), trained as ``opts.mr_init`` says.

        ``hr``: start from the phi_hr trunk and fine-tune with the phi_mr recipe. At CPU
        scale a phi_mr trunk trained from scratch settles on a weak, resolution-invariant
        solution (it pays 8-13 points at full resolution); the warm start keeps what phi_hr
        learned (docs/results.md).
        """
        if self.opts.mr_init == "scratch":
            return self.trunk(f"mr_{version}")
        return self.finetuned_hr(f"mr_{version}")

    def finetuned_hr(self, sampler: str) -> StageResult:
        """The phi_hr trunk fine-tuned with ``sampler`` (mr_finetune_epochs at mr_finetune_lr).

        With ``hr`` it is the control for the warm-started phi_mr trunks: the same extra
        epochs, at full resolution only.
        """
        o = self.opts
        hr = self.trunk("hr")
        name = f"trunk_{sampler}_from_hr"
        cfg = self._train_config("trunk", name, o.mr_finetune_epochs, o.trunk_loss, {
            "data": {"sampler": sampler}, "model": {"init_from": hr.outputs["model"]},
            "optim": {"lr": o.mr_finetune_lr}})
        return self.train_stage(name, cfg, [hr])

    def branches(self, trunk: StageResult, name: str = "btnet", resolutions: list[int] | None = None,
                 loss: str | None = None, **switches: Any) -> StageResult:
        """BTNet branches on ``trunk``; ``switches`` are Table 3's (pretrained, bct, ...)."""
        from btnet.pipeline.options import BRANCH_RECIPES

        rs = list(resolutions or self.opts.resolutions)
        recipe = dict(BRANCH_RECIPES[self.opts.branch_recipe])
        if "untie" in recipe:  # a recipe's untied paths, where this stage has them
            recipe["untie"] = [r for r in recipe["untie"] if r in rs]
            if not recipe["untie"]:
                del recipe["untie"]
        branch = {"trunk": trunk.outputs["model"], "resolutions": rs, **recipe, **switches}
        cfg = self._train_config("branch", name, self.opts.branch_epochs,
                                 loss or self.opts.branch_loss, {"branch": branch})
        return self.train_stage(name, cfg, [trunk])

    def mm_models(self, hr: StageResult | None = None) -> StageResult:
        """phi_mm over all resolutions: one cached stage per r (Table 3 reuses r = 14).

        At the canonical size phi_mm's member is phi_hr itself (``hr``); without it, S-pixel
        faces would be down-sampled to the largest low-resolution member.
        """
        parts = [self.mm([r], name=f"mm_r{r}") for r in self.opts.resolutions]
        merged = {r: p for part in parts for r, p in part.outputs["parts"].items()}
        if hr is not None:
            merged[str(self.opts.canonical)] = hr.outputs["model"]
            parts.append(hr)
        key = self.cache.key("mm", {}, parts)
        return StageResult("mm", key, parts[0].dir, {"parts": merged}, True, 0.0, "phi_mm")

    def mm(self, resolutions: list[int] | None = None, name: str = "mm") -> StageResult:
        """phi_mm: one model per resolution, from scratch (also Table 3's 'scratch' row)."""
        rs = list(resolutions or self.opts.resolutions)
        cfg = self._train_config("mm", name, self.opts.mm_epochs, self.opts.trunk_loss,
                                 {"mm": {"resolutions": rs}})
        return self.train_stage(name, cfg)

    # --- evaluation --------------------------------------------------------------------------
    def pair_set(self):
        if self._pairset is None:
            self._pairset = self.source.pair_set(self.opts)
        return self._pairset

    def encoder_spec(self, stage: StageResult) -> str:
        if stage.outputs.get("parts"):
            return "mm:" + ",".join(f"{r}={p}" for r, p in sorted(
                stage.outputs["parts"].items(), key=lambda kv: int(kv[0])))
        return stage.outputs["model"]

    def evaluate(self, label: str, stage: StageResult, settings: list[str] | None = None) -> StageResult:
        from btnet.evaluation.verification import default_settings, parse_settings

        o = self.opts
        chosen = (parse_settings(settings, o.canonical) if settings
                  else default_settings(o.canonical, o.resolutions))
        params = {"settings": [s.name for s in chosen], "flip": o.flip,
                  "data": self.source.cache_params(o)}

        def run(folder: Path) -> dict[str, Any]:
            from btnet.evaluation.verification import evaluate_pairs
            from btnet.inference import load_encoder

            encoder = load_encoder(self.encoder_spec(stage), name=label)
            results = evaluate_pairs(encoder, self.pair_set(), chosen, o.canonical,
                                     model_name=label, flip=o.flip, progress=o.progress)
            data = [r.to_dict() for r in results]
            (folder / "results.json").write_text(json.dumps(data, indent=1))
            return {"results": str(folder / "results.json")}

        result = self.cache.run("eval", params, run, [stage], label=f"eval_{label}")
        result.label = label
        return result

    def results(self, evals: list[StageResult]):
        """Cached verification results, named by the label each evaluation was asked under."""
        from btnet.evaluation.verification import VerificationResult

        out = []
        for ev in evals:
            for d in json.loads(Path(ev.outputs["results"]).read_text()):
                d["model"] = ev.label or d["model"]
                out.append(VerificationResult(**d))
        return out

    def write_summary(self, report_dir: Path, extra: dict[str, Any]) -> None:
        summary = {"options": self.opts.to_dict(), "stages": self.cache.summary(), **extra}
        (report_dir / "study.json").write_text(json.dumps(summary, indent=2, default=str))


# ------------------------------------------------------------------------------------ studies


HR_TRUNK_BTNET = "BTNet on phi_hr"  # the same branches on the phi_hr trunk (``trunks`` study)
HR_FINETUNED = "phi_hr_ft"  # with mr_init=hr: phi_hr fine-tuned like phi_mr, at full resolution


def run_table1(opts: StudyOptions, echo=print, models: tuple[str, ...] | None = None) -> Path:
    """Table 1: phi_hr, phi_mm, phi_mr v1/v2/v3 and BTNet (on the phi_mr v1 trunk), or the
    ``models`` asked for. With mr_init=hr the default adds ``HR_FINETUNED``, the control for the
    warm-started trunks' extra epochs."""
    from btnet.evaluation.gains import GainBaselines
    from btnet.evaluation.report import write_verification_report

    study = Study(opts, echo)
    wanted = models or ("phi_hr", "phi_mm", "phi_mr_v1", "phi_mr_v2", "phi_mr_v3", "BTNet",
                        *((HR_FINETUNED,) if opts.mr_init == "hr" else ()))
    start = time.perf_counter()
    evals: list[StageResult] = []
    stages: dict[str, StageResult] = {}
    if "phi_hr" in wanted and opts.wants("trunk_hr"):
        stages["phi_hr"] = study.trunk("hr")
    if HR_FINETUNED in wanted and opts.mr_init == "hr" and opts.wants("trunk_hr_ft"):
        stages[HR_FINETUNED] = study.finetuned_hr("hr")
    for v in ("v1", "v2", "v3"):
        if (f"phi_mr_{v}" in wanted or (v == "v1" and "BTNet" in wanted)) and opts.wants(f"trunk_mr_{v}"):
            stages[f"phi_mr_{v}"] = study.mr_trunk(v)
    if "phi_mm" in wanted and opts.wants("mm"):
        stages["phi_mm"] = study.mm_models(stages.get("phi_hr"))
    if "BTNet" in wanted and opts.wants("btnet") and "phi_mr_v1" in stages:
        stages["BTNet"] = study.branches(stages["phi_mr_v1"])
    for label in wanted:
        if label in stages:
            evals.append(study.evaluate(label, stages[label]))
    results = study.results(evals)
    report_dir = study.root / "report"
    mr = "phi_mr_v1" if "phi_mr_v1" in stages else None
    baselines = GainBaselines(hr="phi_hr" if "phi_hr" in stages else None, mr=mr,
                              r="phi_mm" if "phi_mm" in stages else None)
    written = write_verification_report(results, report_dir, baselines, opts.canonical,
                                        title=f"Table 1 ({study.source.description})",
                                        notes=opts.mr_trunk_recipe() + " "
                                        + opts.branch_recipe_line() + (
                                            f" {HR_FINETUNED}: phi_hr fine-tuned the same way at "
                                            "full resolution only, the control for those extra "
                                            "epochs." if HR_FINETUNED in stages else ""))
    cost = _cost_section(study, stages.get("BTNet"), results)
    study.write_summary(report_dir, {"seconds": time.perf_counter() - start, "cost": cost})
    echo(f"report: {written['markdown']}")
    return report_dir


def _cost_section(study: Study, btnet_stage: StageResult | None, results=()) -> dict | None:
    """Cost table plus Figures 5 and 6: accuracy at S&r against MACs and stored parameters."""
    if btnet_stage is None:
        return None
    from btnet.evaluation.plots import CostPoint, plot_cost
    from btnet.io.model_store import load_model
    from btnet.models.cost import cost_report

    report = cost_report(load_model(btnet_stage.outputs["model"]).model)
    folder = study.root / "report"
    acc = {(r.model, r.setting): 100 * r.accuracy_mean for r in results}
    macs, params = [], []
    for p in report.paths[:-1]:  # the low resolutions
        setting = f"{report.canonical}&{p.resolution}"
        for model in sorted({m for m, s in acc if s == setting}):
            branch = model.startswith("BTNet")
            macs.append(CostPoint(f"{model} r={p.resolution}",
                                  (p.btnet_macs if branch else p.upsample_macs) / 1e9,
                                  acc[(model, setting)]))
            if branch:
                params.append(CostPoint(f"{model} r={p.resolution}",
                                        (report.trunk_params + p.stored_params) / 1e6,
                                        acc[(model, setting)]))
            elif model.startswith("phi_mr") or model == "phi_hr":
                params.append(CostPoint(f"{model} r={p.resolution}", report.trunk_params / 1e6,
                                        acc[(model, setting)]))
    figures = []
    if macs:
        figures.append(plot_cost(macs, folder / "figure5_accuracy_vs_macs.png", xlabel="GMACs per face",
                                 title="Accuracy at S&r vs inference cost (Figure 5)"))
        figures.append(plot_cost(params, folder / "figure6_accuracy_vs_params.png",
                                 xlabel="parameters to serve r and S (M)",
                                 title="Accuracy at S&r vs stored parameters (Figure 6)"))
    md = folder / "report.md"
    text = "\n## Cost\n\n" + report.to_table() + "\n"
    text += "".join(f"\n![{f.stem}]({f.name})\n" for f in figures)
    md.write_text(md.read_text() + text)
    (folder / "cost.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report.to_dict()


def _accuracy_note(study: Study) -> str:
    """The fold count and k-fold protocol of a study's accuracy tables, in words."""
    from btnet.evaluation.report import accuracy_caption
    from btnet.evaluation.verification import default_protocol

    return accuracy_caption([default_protocol(study.pair_set())], [10])


def _stored_params(stage: StageResult, r: int) -> int | None:
    from btnet.io.model_store import read_model_json

    folder = stage.outputs["parts"].get(str(r)) if stage.outputs.get("parts") else stage.outputs["model"]
    info = read_model_json(folder)
    path = info.get("paths", {}).get(str(r))
    return None if path is None else int(path["stored_parameters"])


def _finish(study: Study, report_dir: Path, title: str, body: str, extra: dict, echo) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    md = report_dir / "report.md"
    md.write_text(f"# {title}\n\n{body}\n")
    study.write_summary(report_dir, extra)
    echo(f"report: {md}")
    return report_dir


TABLE3_ROWS = (
    # label, switches of the branch recipe (None: the mm recipe, i.e. from scratch)
    ("scratch", None),
    ("+ pretrained init", dict(pretrained=True, bct=False, fixed_trunk=False, distill_weight=0.0)),
    ("+ BCT", dict(pretrained=True, bct=True, fixed_trunk=False, distill_weight=0.0)),
    ("+ fixed trunk", dict(pretrained=True, bct=True, fixed_trunk=True, distill_weight=0.0)),
    ("+ branch distillation (BTNet)",
     dict(pretrained=True, bct=True, fixed_trunk=True, distill_weight=0.5)),
)


def run_table3(opts: StudyOptions, echo=print) -> Path:
    """Table 3: the five training-method rows for one resolution (14) with stored parameters."""
    from btnet.evaluation.report import accuracy_cells, markdown_table

    study = Study(opts, echo)
    r = 14 if 14 in opts.resolutions else sorted(opts.resolutions)[len(opts.resolutions) // 2]
    settings = [f"{opts.canonical}&{r}", f"{r}&{r}"]
    trunk = study.mr_trunk("v1")
    results, rows = [], []
    for i, (label, switches) in enumerate(TABLE3_ROWS):
        if switches is None:
            stage = study.mm([r], name=f"mm_r{r}")
        else:
            stage = study.branches(trunk, name=f"table3_row{i}_r{r}", resolutions=[r], **switches)
        ev = study.evaluate(label, stage, settings)
        res = study.results([ev])
        results += res
        stored = _stored_params(stage, r)
        rows.append([label, *accuracy_cells(res, label, settings),
                     "–" if stored is None else f"{stored / 1e6:.3f}M"])
    body = (f"Resolution r = {r}, canonical size S = {opts.canonical}, trunk: phi_mr v1; data: "
            f"{study.source.description}. {opts.mr_trunk_recipe()} "
            f"{_accuracy_note(study)}\n\n"
            + markdown_table(["training method", *settings, "stored params"], rows))
    return _finish(study, study.root / "report", "Table 3: training methods", body,
                   {"rows": rows, "results": [x.to_dict() for x in results]}, echo)


def run_table4(opts: StudyOptions, echo=print) -> Path:
    """Table 4: CosFace / ArcFace / CurricularFace as the influence loss of the branches."""
    from btnet.evaluation.report import accuracy_cells, markdown_table
    from btnet.evaluation.verification import default_settings

    study = Study(opts, echo)
    trunk = study.mr_trunk("v1")
    settings = [s.name for s in default_settings(opts.canonical, opts.resolutions)]
    rows, results = [], []
    for loss in ("cosface", "arcface", "curricularface"):
        stage = study.branches(trunk, name=f"table4_{loss}", loss=loss)
        res = study.results([study.evaluate(f"BTNet ({loss})", stage)])
        results += res
        rows.append([loss, *accuracy_cells(res, f"BTNet ({loss})", settings)])
    body = (f"Branches on the phi_mr v1 trunk; data: {study.source.description}. "
            f"{opts.mr_trunk_recipe()} {_accuracy_note(study)}\n\n"
            + markdown_table(["influence loss", *settings], rows))
    return _finish(study, study.root / "report", "Table 4: influence loss", body,
                   {"rows": rows, "results": [x.to_dict() for x in results]}, echo)


def run_trunks(opts: StudyOptions, echo=print) -> Path:
    """The same branches on a phi_hr trunk beside the phi_mr trunk."""
    from btnet.evaluation.report import write_verification_report

    study = Study(opts, echo)
    hr, mr = study.trunk("hr"), study.mr_trunk("v1")
    stages = {"phi_hr": hr, "phi_mr_v1": mr,
              HR_TRUNK_BTNET: study.branches(hr, name="btnet_hr_trunk"),
              "BTNet on phi_mr_v1": study.branches(mr)}
    results = study.results([study.evaluate(k, v) for k, v in stages.items()])
    report_dir = study.root / "report"
    written = write_verification_report(results, report_dir, None, opts.canonical,
                                        title="Trunk choice: BTNet on phi_hr vs on phi_mr",
                                        notes=opts.mr_trunk_recipe() + " "
                                        + opts.branch_recipe_line())
    study.write_summary(report_dir, {})
    echo(f"report: {written['markdown']}")
    return report_dir


def run_table2(opts: StudyOptions, echo=print) -> Path:
    """Table 2: the nine branch-selection strategies on a SurvFace-like open-set protocol."""
    from btnet.evaluation.identification import STRATEGIES

    study = Study(opts, echo)
    hr, mr = study.trunk("hr"), study.mr_trunk("v1")
    bt = study.branches(mr)
    params = {"data": study.source.test_params(opts), "seed": opts.seed}

    def run(folder: Path) -> dict:
        from btnet.evaluation.identification import (
            compare_strategies,
            evaluate_openset,
            selector_factory,
        )
        from btnet.evaluation.report import write_identification_report
        from btnet.inference import load_encoder

        protocol = study.source.openset(opts, folder)
        results = []
        for label, stage in (("phi_hr", hr), ("phi_mr_v1", mr)):
            enc = load_encoder(study.encoder_spec(stage), name=label)
            results.append(evaluate_openset(enc, protocol, label, progress=opts.progress))
        enc = load_encoder(study.encoder_spec(bt), name="BTNet")
        results += compare_strategies(selector_factory(enc), protocol, STRATEGIES, "BTNet",
                                      progress=opts.progress)
        write_identification_report(results, folder / "report",
                                    title=f"Table 2 ({protocol.name})")
        (folder / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
        return {"report": str(folder / "report"), "protocol": protocol.extra.get("source", "")}

    stage = study.cache.run("table2_openset", params, run, [hr, mr, bt])
    report_dir = study.root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    for f in Path(stage.outputs["report"]).iterdir():
        shutil.copy2(f, report_dir / f.name)
    study.write_summary(report_dir, {})
    echo(f"report: {report_dir / 'report.md'}")
    return report_dir


def run_figure7(opts: StudyOptions, echo=print) -> Path:
    """Figure 7: accuracy and stored parameters as the coupling point moves deeper.

    For each resolution r, one branch per unit with an r x r output (offset 0 is BTNet's
    default, the first such unit; larger offsets couple deeper and store more).
    """
    from btnet.evaluation.plots import plot_coupling_points
    from btnet.evaluation.report import accuracy_cells, markdown_table
    from btnet.models import build_backbone

    study = Study(opts, echo)
    trunk = study.mr_trunk("v1")
    geometry = build_backbone(opts.arch, **{k: v for k, v in opts.model_params().items()
                                            if k != "arch"}).coupling_geometry()
    rows, points = [], []
    for r in opts.resolutions:
        settings = [f"{opts.canonical}&{r}", f"{r}&{r}"]
        for offset, unit in enumerate(geometry.candidates(r)):
            name = geometry.unit_names[unit]
            stage = study.branches(trunk, name=f"figure7_r{r}_{name}", resolutions=[r],
                                   coupling_offset=offset)
            label = f"r{r}@{name}"
            res = study.results([study.evaluate(label, stage, settings)])
            stored = _stored_params(stage, r)
            accs = {x.setting: x.accuracy_mean for x in res}
            rows.append([str(r), name, *accuracy_cells(res, label, settings), f"{stored / 1e6:.3f}M"])
            points.append({"r": r, "unit": name, "offset": offset, "stored_params": stored,
                           "accuracy": accs})
    report_dir = study.root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_coupling_points(points, opts.canonical, report_dir / "figure7.png")
    body = (f"Branches on the phi_mr v1 trunk, coupled at every unit with an r x r output; "
            f"data: {study.source.description}. {opts.mr_trunk_recipe()} "
            f"{_accuracy_note(study)}\n\n"
            + markdown_table(["r", "coupled after", "S&r", "r&r", "stored params"], rows)
            + "\n\n![figure 7](figure7.png)")
    return _finish(study, report_dir, "Figure 7: coupling point", body, {"points": points}, echo)


# The study's label-free rows use the cosine term (measured in docs/results.md before MSE was
# found better at 7 px and became the default of branch.embed_loss / btnet branch add); the
# MSE row compares the two on the same images.
LABELFREE_SWITCHES = {"objective": "distill", "embed_loss": "cosine", "distill_weight": 0.5,
                      "embed_distill_weight": 1.0}


def _own_images_spec(study: Study) -> tuple[str, str]:
    """Images of people the trunks never saw, used without their names: the CelebA subset of
    the real-face protocol (its identities are part of the trunks' training set, so this is the
    user's-own-photos setting only in that no label of them is read), or built-in faces of a
    different seed (identities the built-in trunks never saw)."""
    from btnet.pipeline.sources import RealFacesSource

    o = study.opts
    if isinstance(study.source, RealFacesSource):
        return (str(study.source.root / "celeba" / "images"),
                "the CelebA subset only, labels ignored (its people are among the trunks' own "
                "training identities: the protocol trains on LFW dev-train + CelebA)")
    spec = f"builtin:ids={o.builtin_train_ids},per_id={o.builtin_per_id},seed={o.seed + 7}"
    return spec, "built-in faces of identities the trunks never saw (labels ignored)"


def _unseen_faces_folder(study: Study) -> tuple[str, str] | None:
    """A flat folder (symbolic links, in the cache) of the LFW dev-train people with a single
    image: the real-face protocol trains on dev-train people with at least two, and tests on
    dev-test people, so no trunk or test ever saw these 2,854 people. None for built-in data."""
    from btnet.data.lfw_celeba_protocol import read_people
    from btnet.pipeline.sources import RealFacesSource

    if not isinstance(study.source, RealFacesSource):
        return None
    lfw = study.source.root / "lfw"
    folder = study.cache.root / "inputs" / "lfw_devtrain_single_image_people"
    if not folder.is_dir():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in read_people(lfw / "peopleDevTrain.txt"):
            images = sorted((lfw / "images" / name).glob("*.jpg"))
            if len(images) == 1:
                (tmp / images[0].name).symlink_to(images[0])
        tmp.rename(folder)
    count = sum(1 for _ in folder.iterdir())
    return str(folder), (f"a flat folder of the {count:,} LFW dev-train people with a single "
                         "image (never seen by the trunks, which train on people with two or more)")


def _paired_cells(results, model: str, base: str, settings: list[str]) -> list[str]:
    """``model - base`` at each setting in points, ± the standard error of the paired per-fold
    difference (both models are scored on the same pairs and folds)."""
    from btnet.evaluation.gains import paired_fold_error

    by = {(r.model, r.setting): r for r in results}
    cells = []
    for s in settings:
        a, b = by.get((model, s)), by.get((base, s))
        if a is None or b is None:
            cells.append("–")
            continue
        diff = 100 * (a.accuracy_mean - b.accuracy_mean)
        err = paired_fold_error(a.metrics.get("fold_accuracies") or None,
                                b.metrics.get("fold_accuracies") or None)
        cells.append(f"{diff:+.2f}" if err is None else f"{diff:+.2f} ± {err:.2f}")
    return cells


def run_labelfree(opts: StudyOptions, echo=print) -> Path:
    """Label-free branches (``branch.objective: distill``) against BCT branches, same trunk,
    same epochs, on the phi_hr trunk and the phi_mr v1 trunk, each used as "a pretrained
    recogniser without its classifier"; plus label-free branches trained on images of people
    the trunk never saw without their names, and the MSE embedding term against the cosine one.

    Stages run in priority order (each model trained, then evaluated), so an interrupted study
    has the most important rows first; ``--stages`` picks a subset: trunk_hr, trunk_mr_v1,
    btnet_hr_trunk, btnet, labelfree, labelfree_own, labelfree_mse.
    """
    from btnet.evaluation.report import accuracy_cells, markdown_table
    from btnet.evaluation.verification import default_settings

    study = Study(opts, echo)
    start = time.perf_counter()
    own_spec, own_text = _own_images_spec(study)
    unseen = _unseen_faces_folder(study)
    evals: list[StageResult] = []
    trunks: list[str] = []  # the trunks asked for, in training order

    def add(label: str, stage: StageResult) -> None:
        evals.append(study.evaluate(label, stage))

    def labelfree(trunk: StageResult, name: str, data: str | None = None, **over: Any):
        cfg = study._train_config("branch", name, opts.branch_epochs, opts.branch_loss, {
            "branch": {"trunk": trunk.outputs["model"],
                       "resolutions": list(opts.resolutions), **LABELFREE_SWITCHES, **over},
            **({"data": {"train": data}} if data else {})})
        return study.train_stage(name, cfg, [trunk])

    trunk_stage = {"phi_hr": lambda: study.trunk("hr"), "phi_mr_v1": lambda: study.mr_trunk("v1")}
    for tname, stage_name in (("phi_hr", "trunk_hr"), ("phi_mr_v1", "trunk_mr_v1")):
        if opts.wants(stage_name):
            trunks.append(tname)
    tags = {"phi_hr": "hr", "phi_mr_v1": "mr"}
    # Priority order: the phi_hr comparison first (its trunk is trained first) with what a
    # user's own photos give, then the phi_mr trunk, then the smaller comparisons.
    plan: list[tuple[str, str, str, Callable[[StageResult], StageResult]]] = []
    for tname in trunks:
        tag = tags[tname]
        plan.append(("btnet_hr_trunk" if tag == "hr" else "btnet", tname, f"BCT on {tname}",
                     lambda t, tag=tag: study.branches(
                         t, name="btnet_hr_trunk" if tag == "hr" else "btnet")))
        plan.append(("labelfree", tname, f"label-free on {tname}",
                     lambda t, tag=tag: labelfree(t, f"labelfree_{tag}")))
        if tag == "hr":
            plan.append(("labelfree_own", tname, f"label-free own images on {tname}",
                         lambda t, tag=tag: labelfree(t, f"labelfree_own_{tag}", own_spec)))
            if unseen is not None:
                plan.append(("labelfree_own", tname, f"label-free unseen people on {tname}",
                             lambda t, tag=tag: labelfree(t, f"labelfree_unseen_{tag}",
                                                          unseen[0])))
    for tname in trunks:  # the MSE term (branch add's default) on the full set, after the
        tag = tags[tname]  # trunk's BCT and cosine rows (phi_hr: after its own-images rows)
        last = max(i for i, item in enumerate(plan) if item[1] == tname)
        plan.insert(last + 1, ("labelfree_mse", tname, f"label-free (MSE embedding) on {tname}",
                               lambda t, tag=tag: labelfree(t, f"labelfree_mse_{tag}",
                                                            embed_loss="mse")))
    for tname in trunks:
        tag = tags[tname]
        if tag == "hr":  # cosine vs MSE, on the smaller own-images set
            plan.append(("labelfree_mse", tname, f"label-free own images (MSE embedding) on {tname}",
                         lambda t, tag=tag: labelfree(t, f"labelfree_own_mse_{tag}", own_spec,
                                                      embed_loss="mse")))
        else:
            plan.append(("labelfree_own", tname, f"label-free own images on {tname}",
                         lambda t, tag=tag: labelfree(t, f"labelfree_own_{tag}", own_spec)))
            if unseen is not None:
                plan.append(("labelfree_own", tname, f"label-free unseen people on {tname}",
                             lambda t, tag=tag: labelfree(t, f"labelfree_unseen_{tag}",
                                                          unseen[0])))
    ready: dict[str, StageResult] = {}

    def trunk_of(tname: str) -> StageResult:
        if tname not in ready:
            ready[tname] = trunk_stage[tname]()
            add(tname, ready[tname])
        return ready[tname]

    for tname in trunks:
        if tname == "phi_hr":
            trunk_of(tname)
    for stage_name, tname, label, build in plan:
        if opts.wants(stage_name):
            add(label, build(trunk_of(tname)))
    for tname in trunks:
        trunk_of(tname)
    results = study.results(evals)
    settings = [s.name for s in default_settings(opts.canonical, opts.resolutions)]
    labels = [ev.label for ev in evals]
    acc_rows = [[label, *accuracy_cells(results, label, settings)] for label in labels]
    comparisons = []
    for tname in trunks:
        for a, b in ((f"label-free on {tname}", f"BCT on {tname}"),
                     (f"label-free (MSE embedding) on {tname}", f"BCT on {tname}"),
                     (f"label-free (MSE embedding) on {tname}", f"label-free on {tname}"),
                     (f"label-free (MSE embedding) on {tname}", tname),
                     (f"label-free on {tname}", tname), (f"BCT on {tname}", tname),
                     (f"label-free own images on {tname}", f"label-free on {tname}"),
                     (f"label-free unseen people on {tname}", f"label-free on {tname}"),
                     (f"label-free own images (MSE embedding) on {tname}",
                      f"label-free own images on {tname}")):
            if a in labels and b in labels:
                comparisons.append([f"{a} − {b}", *_paired_cells(results, a, b, settings)])
    body = (
        f"Data: {study.source.description}. {opts.mr_trunk_recipe()} Branches "
        f"{', '.join(map(str, opts.resolutions))}, {opts.branch_epochs:g} epochs each, frozen trunk, "
        "per-resolution BatchNorm. BCT: CurricularFace through the trunk's own classifier plus "
        "branch distillation (λ 0.5). Label-free (`branch.objective: distill`): branch "
        "distillation (λ 0.5) plus 1 × the embedding term (cosine unless marked MSE), no "
        f"classifier, labels ignored. 'Own images': label-free, trained on {own_text}. "
        + (f"'Unseen people': label-free, trained on {unseen[1]}. " if unseen else "") +
        "Accuracy (%), 10-fold mean ± std.\n\n"
        + markdown_table(["model", *settings], acc_rows)
        + "\n\nDifferences (points) ± standard error of the paired per-fold difference "
        "(a difference above about twice it is resolved by the test set):\n\n"
        + markdown_table(["comparison", *settings], comparisons)
    )
    return _finish(study, study.root / "report", "Label-free branches vs BCT branches", body,
                   {"seconds": time.perf_counter() - start, "accuracy": acc_rows,
                    "comparisons": comparisons, "results": [x.to_dict() for x in results]}, echo)


STUDIES: dict[str, Callable[..., Path]] = {
    "table1": run_table1,
    "table2": run_table2,
    "table3": run_table3,
    "table4": run_table4,
    "trunks": run_trunks,
    "figure7": run_figure7,
    "labelfree": run_labelfree,
}
