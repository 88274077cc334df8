"""Training of the compact CLIP (`clipnerf train-clip`) on a tiny configuration."""

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from clipnerf_ns.cli import entrypoint
from clipnerf_ns.clip import domain, domain_data, domain_eval
from clipnerf_ns.clip.domain_config import Augment, ClipArchitecture, DomainTraining
from clipnerf_ns.clip.encoder import ClipConfig, ClipEncoder, contrastive_loss, new_tokenizer, read_compact_metadata
from clipnerf_ns.data.synth import FRAME_EXTENTS

warnings.filterwarnings("ignore", category=FutureWarning)

TINY_ARCH = ClipArchitecture(embed_dim=32, image_size=32, patch_size=16, vision_width=64, vision_layers=1,
                             text_width=32, text_layers=1, text_heads=1, context_length=40)
TINY_ARGS = [
    "--num-objects", "5", "--heldout-objects", "2", "--views", "2", "--captions", "2", "--steps", "3",
    "--batch-size", "4", "--warmup-steps", "1", "--arch.embed-dim", "32", "--arch.image-size", "32",
    "--arch.vision-width", "64", "--arch.vision-layers", "1", "--arch.text-width", "32",
    "--arch.text-layers", "1", "--arch.text-heads", "1", "--categories", "chairs", "cars",
]


def test_train_clip_cli_writes_a_loadable_self_describing_file(tmp_path, capsys):
    out = tmp_path / "weights" / "tiny.safetensors"
    cache = tmp_path / "data.npz"
    entrypoint(["train-clip", "--out", str(out), "--cache", str(cache), *TINY_ARGS, "--framing", "category"])
    printed = capsys.readouterr().out
    assert "image->text top-1" in printed and "colour words" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.safetensors"]  # no temporary left behind
    meta = read_compact_metadata(out)
    assert meta["preprocess"]["image_size"] == 32 and meta["training"]["templates"] == "default"
    assert meta["training"]["command"].startswith("clipnerf train-clip --out")
    assert set(meta["training"]["heldout_figures"]) >= {"i2t_top1", "t2i_top1", "color_accuracy"}
    encoder = ClipEncoder.load(ClipConfig(model="compact", checkpoint=out))
    assert encoder.embed_dim == 32 and encoder.image_size == 32 and encoder.context_length == 40
    # views framed on its category's box: the file says so
    assert meta["preprocess"]["frame_extents"]["chairs"] == list(FRAME_EXTENTS["chairs"])
    assert "--framing category" in meta["training"]["command"]
    assert encoder.encode_image(torch.rand(2, 64, 64, 3)).shape == (2, 32)

    # an existing output is refused without --overwrite (exit 2, one line), and left untouched
    before = out.read_bytes()
    with pytest.raises(SystemExit) as info:
        entrypoint(["train-clip", "--out", str(out), "--cache", str(cache), *TINY_ARGS])
    assert info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before

    # --steps 0 only renders the cache (used to prepare long runs) and still reports
    entrypoint(["train-clip", "--out", str(tmp_path / "untrained.safetensors"), "--cache", str(cache), *TINY_ARGS,
                "--steps", "0"])
    assert "final loss none (no steps)" in capsys.readouterr().out


_STAGE_4 = {"num_objects": 4000, "lr": 3e-4, "image_size": 128, "warmup_steps": 50, "answer_weight": 3.0,
            "answer_questions": 6}
_STAGE_7 = {**_STAGE_4, "steps": 1000, "attribute_weight": 4.0, "answer_weight": 6.0, "answer_balance": True,
            "focus_questions": ["back_tilt", "seat_width", "leg_thickness", "leg_count"], "focus_weight": 4.0}
_STAGE_8 = {**_STAGE_7, "front_views": 4}
_DEPTH = {**_STAGE_8, "steps": 600, "cross_answer_weight": 6.0, "focus_questions": ["seat_width", "seat_depth", "back_tilt"],
          "focus_weight": 6.0}
LATER_STAGES = {
    name: (
        {"steps": 1500, "lr": 5e-4, "image_size": 128},
        {"steps": 600, "lr": 3e-4, "image_size": 128, "warmup_steps": 50, "answer_weight": 2.0, "answer_questions": 4},
        {**_STAGE_4, "steps": steps},
        {**_STAGE_4, "steps": 800, "attribute_weight": 4.0},
        {**_STAGE_4, "steps": 800, "attribute_weight": 4.0, "answer_weight": 6.0, "answer_balance": True},
    ) + extra for name, steps, extra in (
        ("compact", 1000, (_STAGE_7, _STAGE_8)),
        ("compact-eval", 600, (_STAGE_7, _STAGE_8, {**_STAGE_8, "steps": 500},
                               {**_STAGE_8, "steps": 500, "cross_answer_weight": 6.0}, _DEPTH, _DEPTH)),
    )
}
"""How the shipped CLIPs were trained further, each stage from the file of the one before (`--init`;
README, "The CLIP models"): at 128 px, then asking each image four questions of the answer loss,
then on four times the objects with six questions, then with four times the weight on the attribute
heads of the image embedding, then with the answer loss logit-adjusted at twice its weight;
both then with the four questions the bench found short weighted four times in both losses
("Stage 7"), then with four more views per object from the front band ("Stage 8": 1000 steps for
both, and 500 more for `compact-eval`), and `compact-eval` 500 more with the cross-question answer
loss ("Stage 10"), then twice 600 steps with the cross term and the seat-depth question, weighted
with seat width and recline ("The seat-depth question")."""


def test_the_defaults_are_the_shipped_compacts_recipe():
    """`clipnerf train-clip --out FILE` trains the first stage of what ships as `compact` (and, with
    --templates alt --seed 1, `compact-eval`): 64 px views. The shipped files were then trained
    further (`--init`, LATER_STAGES). Each file records every setting of its stages: the last in
    `training`, each earlier one in the `init_training` of the one after it. A setting added
    after a stage was trained is absent from its record, which means the setting's default."""
    from clipnerf_ns.clip.encoder import SHIPPED_MODELS, WEIGHTS_DIR

    skip = ("out", "cache", "overwrite", "init")
    defaults = domain.jsonable(dataclasses.asdict(DomainTraining(out=Path("x.safetensors"))))
    defaults = {k: v for k, v in defaults.items() if k not in skip}
    for name, own in (("compact", {}), ("compact-eval", {"templates": "alt", "seed": 1})):
        records = [read_compact_metadata(WEIGHTS_DIR / SHIPPED_MODELS[name])["training"]]
        while "init_training" in records[-1]:
            assert records[-1]["init"] and len(records[-1]["init_sha256"]) == 64
            records.append(records[-1]["init_training"])
        assert len(records) == 1 + len(LATER_STAGES[name]), name
        for stage, (record, changes) in enumerate(zip(reversed(records), ({},) + LATER_STAGES[name])):
            arch = {**defaults["arch"], **({"image_size": changes["image_size"]} if "image_size" in changes else {})}
            expected = {**defaults, **own, **{k: v for k, v in changes.items() if k != "image_size"}, "arch": arch}
            assert {k: record.get(k, defaults[k]) for k in defaults} == expected, (name, stage)


def test_a_clip_says_how_its_views_are_framed(tmp_path):
    """A file names each category's framing box (`--framing category`, checked in the CLI test
    above), which the encoder gives to whoever renders views for it (mapper training,
    optimize mode, clipnerf eval); a CLIP of views framed on the object has none, as OpenAI's."""
    from clipnerf_ns.clip.encoder import Preprocess, save_compact

    model = domain.new_model(TINY_ARCH, 0)
    for extents in (domain_data.frame_extents("category", ("chairs", "cars")), domain_data.frame_extents("object", ("chairs",))):
        preprocess = Preprocess(32, domain_data.CLIP_MEAN, domain_data.CLIP_STD, 40, extents)
        out = save_compact(model, TINY_ARCH.open_clip_config(), preprocess, {}, tmp_path / "framed.safetensors")
        encoder = ClipEncoder.load(ClipConfig(model="compact", checkpoint=out))
        assert encoder.frame_extent("chairs") == (FRAME_EXTENTS["chairs"] if extents else None)
        assert encoder.frame_extent("lamps") is None
        assert domain_data.framing_of(encoder, "cars") == ("category" if extents else "object")


def test_cache_gives_the_same_data(tmp_path):
    config = DomainTraining(out=tmp_path / "x.safetensors", num_objects=3, heldout_objects=1, views=2, captions=2,
                            categories=("cars",), arch=TINY_ARCH, cache=tmp_path / "c.npz")
    settings = domain_data.render_settings(config)
    fresh = domain_data.load_or_render(settings, config.cache)
    cached = domain_data.load_or_render(settings, config.cache)
    assert np.array_equal(fresh.rgba, cached.rgba) and fresh.captions == cached.captions
    assert isinstance(cached.rgba, np.memmap) and not cached.rgba.flags.writeable  # mapped from the file, not read in
    assert fresh.rgba.shape == (3, 2, 32, 32, 4) and fresh.heldout.tolist() == [False, False, True]
    assert all(c for c in fresh.colors)  # a car's body colour names the whole car
    assert cached.attributes == fresh.attributes and fresh.attributes[0]["category"] == "cars"


def test_front_views_append_front_band_views_of_the_same_objects(tmp_path):
    """--front-views N: each object gets N more views from the front band (the same objects and
    captions, other cameras), cached beside the main cache; train-clip trains on them and records it."""
    config = DomainTraining(out=tmp_path / "x.safetensors", num_objects=3, heldout_objects=1, views=2, captions=2,
                            categories=("chairs",), arch=TINY_ARCH, cache=tmp_path / "c.npz", front_views=1)
    settings = domain_data.render_settings(config)
    plain = domain_data.load_or_render(settings, None)
    both = domain_data.load_or_render_with_front(settings, config.front_views, config.cache)
    assert both.rgba.shape == (3, 3, 32, 32, 4) and np.array_equal(both.rgba[:, :2], plain.rgba)
    assert both.captions == plain.captions and (tmp_path / "c-front.npz").is_file()
    front = domain_data.load_or_render({**settings, "views": 1, "band": "front"}, None)
    assert np.array_equal(both.rgba[:, 2:], front.rgba) and not np.array_equal(both.rgba[:, 2:], plain.rgba[:, :1])
    out = tmp_path / "front.safetensors"
    entrypoint(["train-clip", "--out", str(out), *TINY_ARGS, "--front-views", "1"])
    training = read_compact_metadata(out)["training"]
    assert training["front_views"] == 1 and "--front-views 1" in training["command"]


def test_loss_decreases_on_a_fixed_batch():
    data = domain_data.render_objects(0, ("chairs", "cars"), 4, 1, 1, "default", 32)
    config = DomainTraining(out=Path("unused.safetensors"), batch_size=8, arch=TINY_ARCH, focused_captions=0.5,
                            hard_negatives=True, attribute_weight=0.5, categories=("chairs", "cars"))
    batch = domain.sample_batch(data, np.arange(8), config, torch.Generator().manual_seed(0))
    assert any(n is not None for n in batch.negatives) and len(batch.captions) == 8
    assert len(batch.answers) == 8 and all(0 <= t < len(a) for t, a in zip(batch.true_answer, batch.answers))
    model = domain.new_model(TINY_ARCH, 0)
    heads = domain.AttributeHeads(32, domain.AttributeHeads.answer_counts(config.categories))
    optimizer = torch.optim.AdamW(torch.nn.ModuleList([model, heads]).parameters(), lr=2e-3)
    tokenize = new_tokenizer(40)
    labels = domain.label_table(data)
    losses = [domain.train_step(model, heads, optimizer, batch, tokenize, labels, data.categories, config)
              for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0]


def test_answer_loss_can_ask_each_image_several_questions():
    """--answer-questions K asks each image K distinct questions of its own (fewer where fewer
    apply), with the same captions and images as K = 1."""
    from clipnerf_ns.data.attribute_captions import applicable

    data = domain_data.render_objects(0, ("chairs", "cars"), 4, 1, 1, "default", 32)
    config = DomainTraining(out=Path("unused.safetensors"), batch_size=8, arch=TINY_ARCH, categories=("chairs", "cars"))
    one = domain.sample_batch(data, np.arange(8), config, torch.Generator().manual_seed(0))
    three = domain.sample_batch(data, np.arange(8), dataclasses.replace(config, answer_questions=3),
                                torch.Generator().manual_seed(0))
    assert one.captions == three.captions and torch.equal(one.images, three.images)
    assert one.answer_rows == list(range(8)) and len(one.answers) == 8
    for row, i in enumerate(three.objects):
        asked = [k for k, r in enumerate(three.answer_rows) if r == row]
        assert len(asked) == min(3, len(applicable(data.categories[i], data.attributes[i])))
        assert len({tuple(three.answers[k]) for k in asked}) == len(asked)  # distinct questions
        assert all(0 <= three.true_answer[k] < len(three.answers[k]) for k in asked)
    model = domain.new_model(TINY_ARCH, 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = domain.train_step(model, None, optimizer, three, new_tokenizer(40), domain.label_table(data), data.categories,
                             dataclasses.replace(config, answer_questions=3))
    assert np.isfinite(loss)


def test_cross_answers_offer_the_false_answers_of_the_images_other_questions(tmp_path, capsys):
    """--cross-answer-weight: each asked question's true caption against the false captions of the
    other questions asked of the same image, none of them true of it; the step's loss counts it,
    and the CLI refuses it where no second question is asked."""
    from clipnerf_ns.data.attribute_captions import applicable

    data = domain_data.render_objects(0, ("chairs", "cars"), 4, 1, 1, "default", 32)
    config = DomainTraining(out=Path("unused.safetensors"), batch_size=8, arch=TINY_ARCH, categories=("chairs", "cars"),
                            answer_questions=3, cross_answer_weight=1.0)
    batch = domain.sample_batch(data, np.arange(8), config, torch.Generator().manual_seed(0))
    unique = sorted({c for a in batch.answers for c in a})
    width = max(len(a) for a in batch.answers)
    choices = torch.tensor([[unique.index(c) for c in a] + [-1] * (width - len(a)) for a in batch.answers])
    cross = domain.cross_answer_choices(choices, torch.tensor(batch.true_answer), torch.tensor(batch.answer_rows))
    for k, row in enumerate(batch.answer_rows):
        offered = [unique[c] for c in cross[k].tolist() if c >= 0]
        assert offered[0] == batch.answers[k][batch.true_answer[k]]
        others = [j for j, r in enumerate(batch.answer_rows) if r == row and j != k]
        true_of_image = {batch.answers[j][batch.true_answer[j]] for j in [k] + others}
        false_of_others = {c for j in others for c in batch.answers[j]} - true_of_image
        assert set(offered[1:]) == false_of_others
    assert any(len([c for c in row if c >= 0]) >= 3 for row in cross.tolist())
    losses = []
    for weight in (0.0, 1.0):
        model = domain.new_model(TINY_ARCH, 0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        losses.append(domain.train_step(model, None, optimizer, batch, new_tokenizer(40), domain.label_table(data),
                                        data.categories, dataclasses.replace(config, cross_answer_weight=weight)))
    assert losses[1] > losses[0]
    assert all(len(applicable(data.categories[i], data.attributes[i])) >= 1 for i in batch.objects)
    with pytest.raises(SystemExit):
        entrypoint(["train-clip", "--out", str(tmp_path / "x.safetensors"), *TINY_ARGS, "--cross-answer-weight", "1"])
    assert "--answer-questions 2 or more" in capsys.readouterr().err


def test_contrastive_loss_with_and_without_hard_negatives():
    image = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    text = torch.nn.functional.normalize(image + 0.1 * torch.randn(4, 8), dim=-1)
    plain = domain.contrastive_loss(image, text, torch.tensor(10.0))
    assert torch.allclose(plain, contrastive_loss()(image, text, torch.tensor(10.0)))  # open_clip's ClipLoss
    none = torch.zeros(4, dtype=torch.bool)
    assert torch.allclose(domain.contrastive_loss(image, text, torch.tensor(10.0), torch.zeros_like(text), none), plain)
    # a hard negative as close as the positive makes the loss larger
    harder = domain.contrastive_loss(image, text, torch.tensor(10.0), text.clone(), torch.ones(4, dtype=torch.bool))
    assert harder > plain + 0.3


def test_answer_loss_picks_among_each_images_own_answers():
    answers = torch.eye(4)  # four answer captions
    images = torch.eye(4)[[1, 3]]  # image 0 looks like answer 1, image 1 like answer 3
    choices = torch.tensor([[0, 1, -1], [2, 3, 0]])  # image 0 chooses between two answers, image 1 among three
    right = domain.answer_loss(images, answers, choices, torch.tensor([1, 1]), torch.tensor(20.0))
    wrong = domain.answer_loss(images, answers, choices, torch.tensor([0, 0]), torch.tensor(20.0))
    assert right < 1e-6 and wrong > 10
    # the padding column never counts: a two-way choice is the same with or without it
    two_way = domain.answer_loss(images[:1], answers, choices[:1, :2], torch.tensor([1]), torch.tensor(1.0))
    padded = domain.answer_loss(images[:1], answers, choices[:1], torch.tensor([1]), torch.tensor(1.0))
    torch.testing.assert_close(two_way, padded)


def test_logit_adjusted_answer_loss_learns_the_balanced_choice():
    """--answer-balance: with one three-legged chair in six and an image embedding that cannot tell
    them apart, a plain cross-entropy learns to lean to "four legs" by log 5, which costs balanced
    accuracy wherever the image is unsure; with each answer's log share added to its logit in
    training, the learned lean is none."""
    from clipnerf_ns.data.attributes import QUESTIONS

    leg_count = [j for j, q in enumerate(QUESTIONS["chairs"]) if q.name == "leg_count"][0]
    labels = torch.full((7, len(QUESTIONS["chairs"])), -1)
    labels[:6, leg_count] = torch.tensor([0, 1, 1, 1, 1, 1])  # the seventh object: question does not apply
    priors = domain.answer_log_priors(labels, ["chairs"] * 7, np.arange(7))
    torch.testing.assert_close(priors["chairs__leg_count"].exp(), torch.tensor([2 / 8, 6 / 8]))  # add-one
    torch.testing.assert_close(priors["chairs__armrests"].exp(), torch.tensor([0.5, 0.5]))  # no answers: uniform
    target = labels[:6, leg_count]
    offset = torch.log(torch.tensor([1 / 6, 5 / 6])).expand(6, 2)  # exact shares, for a closed-form answer
    choices = torch.tensor([[0, 1]] * 6)
    for adjust, expected_lean in ((None, np.log(5)), (offset, 0.0)):
        lean = torch.zeros(1, requires_grad=True)  # the score of "four legs" minus that of "three legs"
        optimizer = torch.optim.LBFGS([lean], max_iter=100, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            answers = torch.stack([torch.zeros(1), lean])  # a one-number image feature, two answer "captions"
            loss = domain.answer_loss(torch.ones(6, 1), answers, choices, target, torch.tensor(1.0), adjust)
            loss.backward()
            return loss

        optimizer.step(closure)
        assert abs(float(lean) - expected_lean) < 1e-3


def test_answer_balance_reaches_the_training_step_and_the_record(tmp_path):
    """--answer-balance end to end: each question asked carries its key, whose prior has one entry
    per answer caption; the step's loss changes with the priors; the CLI records the setting."""
    data = domain_data.render_objects(0, ("chairs", "cars"), 4, 1, 1, "default", 32)
    config = DomainTraining(out=Path("unused.safetensors"), batch_size=8, arch=TINY_ARCH, categories=("chairs", "cars"),
                            answer_questions=3, answer_balance=True)
    batch = domain.sample_batch(data, np.arange(8), config, torch.Generator().manual_seed(0))
    labels = domain.label_table(data)
    priors = domain.answer_log_priors(labels, data.categories, np.arange(8))
    assert len(batch.answer_keys) == len(batch.answers)
    assert all(len(priors[key]) == len(answers) for key, answers in zip(batch.answer_keys, batch.answers))
    losses = []
    for log_priors in (None, priors):
        model = domain.new_model(TINY_ARCH, 0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        losses.append(domain.train_step(model, None, optimizer, batch, new_tokenizer(40), labels, data.categories,
                                        config, log_priors))
    assert all(np.isfinite(losses)) and losses[0] != losses[1]
    out = tmp_path / "balanced.safetensors"
    entrypoint(["train-clip", "--out", str(out), *TINY_ARGS, "--answer-balance"])
    assert read_compact_metadata(out)["training"]["answer_balance"] is True


def test_focus_questions_weigh_their_terms_in_the_answer_and_attribute_losses(tmp_path, capsys):
    """--focus-questions Q --focus-weight W: the answer loss counts the rows asking Q W times (the
    others as before) and so do the attribute heads of Q; the CLI checks the names and records them."""
    keys = ["chairs__back_tilt", "chairs__armrests", "cars__spoiler"]
    weight = domain.question_weights(keys, ("back_tilt", "spoiler"), 4.0)
    torch.testing.assert_close(weight, torch.tensor([4.0, 1.0, 4.0]))
    answers, images = torch.eye(2), torch.eye(2)[[0, 0, 1]]
    choices, target = torch.tensor([[0, 1]] * 3), torch.tensor([1, 0, 0])  # rows 0 and 2 wrong, row 1 right
    rows = [domain.answer_loss(images[k:k + 1], answers, choices[k:k + 1], target[k:k + 1], torch.tensor(5.0)) for k in range(3)]
    weighted = domain.answer_loss(images, answers, choices, target, torch.tensor(5.0), weight=weight)
    torch.testing.assert_close(weighted, (4 * rows[0] + rows[1] + 4 * rows[2]) / 3)
    torch.testing.assert_close(domain.answer_loss(images, answers, choices, target, torch.tensor(5.0), weight=torch.ones(3)),
                               domain.answer_loss(images, answers, choices, target, torch.tensor(5.0)))

    data = domain_data.render_objects(0, ("chairs",), 6, 1, 1, "default", 32)
    labels = domain.label_table(data)
    heads = domain.AttributeHeads(8, domain.AttributeHeads.answer_counts(("chairs",)))
    features = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    plain = heads.loss(features, data.categories, labels)
    focused = heads.loss(features, data.categories, labels, ("back_height",), 3.0)
    from clipnerf_ns.data.attributes import QUESTIONS

    j = [k for k, q in enumerate(QUESTIONS["chairs"]) if q.name == "back_height"][0]
    applied = [k for k in range(len(QUESTIONS["chairs"])) if bool((labels[:, k] >= 0).any())]
    alone = torch.nn.functional.cross_entropy(heads(features, "chairs", "back_height"), labels[:, j], ignore_index=-1)
    torch.testing.assert_close(focused, plain + 2.0 * alone / len(applied))

    out = tmp_path / "focused.safetensors"
    entrypoint(["train-clip", "--out", str(out), *TINY_ARGS, "--focus-questions", "back_tilt", "--focus-weight", "3"])
    training = read_compact_metadata(out)["training"]
    assert training["focus_questions"] == ["back_tilt"] and training["focus_weight"] == 3.0
    assert "--focus-questions back_tilt --focus-weight 3.0" in training["command"]
    with pytest.raises(SystemExit) as info:
        entrypoint(["train-clip", "--out", str(tmp_path / "x.safetensors"), *TINY_ARGS, "--focus-questions", "recline"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "no question recline" in err and "back_tilt" in err and len(err.splitlines()) == 1


def test_binary_accuracy_tells_a_lean_from_a_blind_ranking():
    """Hand-made scores: renders the margin orders perfectly but cuts on the wrong side of two of
    them (AUC 1, recall of the prompt's side 0.5), and renders it cannot order (AUC 0.5)."""
    class Words:  # the two texts: the prompt along the first axis, the opposite along the second
        @staticmethod
        def encode_text(texts):
            return torch.eye(2)

    leaning = torch.tensor([[0.1, 0.2], [0.1, 0.3], [0.4, 0.1], [0.5, 0.1], [0.0, 0.5], [0.0, 0.6]])
    truth = [True, True, True, True, False, False]
    figures = domain_eval.binary_accuracy(Words, leaning, truth, "p", "o")
    assert (figures["recall_prompt"], figures["recall_opposite"], figures["auc"]) == (0.5, 1.0, 1.0)
    assert figures["accuracy"] == 0.75 and (figures["positives"], figures["negatives"]) == (4, 2)
    blind = torch.tensor([[0.3, 0.1], [0.1, 0.3], [0.3, 0.1], [0.1, 0.3]])
    figures = domain_eval.binary_accuracy(Words, blind, [True, True, False, False], "p", "o")
    assert figures["auc"] == 0.5 and figures["accuracy"] == 0.5
    assert np.isnan(domain_eval.binary_accuracy(Words, blind, [True] * 4, "p", "o")["accuracy"])


def test_the_accuracy_interval_counts_objects_not_views():
    """The interval resamples objects: more views of the same objects (which err together) do not
    narrow it, more objects do, and it holds the figure itself."""
    def interval(n_objects, views):
        rng = np.random.default_rng(1)
        right_obj, pos_obj = rng.random(n_objects) < 0.8, np.arange(n_objects) % 3 > 0
        objects = np.repeat(np.arange(n_objects), views)
        right, pos = right_obj[objects], pos_obj[objects]
        accuracy = 0.5 * (right[pos].mean() + right[~pos].mean())
        low, high = domain_eval.balanced_accuracy_interval(right, pos, ~pos, objects)
        assert low < accuracy < high
        return high - low

    assert interval(120, 1) == pytest.approx(interval(120, 8), abs=0.01)
    assert interval(1200, 1) < 0.5 * interval(120, 1)
    pos = np.arange(8) % 4 < 2  # four objects of two views, two on each side
    assert domain_eval.balanced_accuracy_interval(np.ones(8, bool), pos, ~pos, np.arange(8) // 2) == (1.0, 1.0)
    assert 0.1 < interval(120, 4) < 0.2  # 40 objects on the smaller side: about +-0.07


def test_retrieval_accuracy_hand_made():
    text = torch.eye(3)
    images = torch.eye(3).repeat_interleave(2, dim=0)  # two renders per object
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    assert domain_eval.retrieval_accuracy(images, text, owner) == (1.0, 1.0)
    swapped = images[[2, 3, 0, 1, 4, 5]]  # renders of objects 0 and 1 exchanged
    assert domain_eval.retrieval_accuracy(swapped, text, owner) == pytest.approx((1 / 3, 1 / 3))
    # top-2: every render finds its own text; the texts of objects 0 and 1 still rank the two
    # renders of the other object first
    assert domain_eval.retrieval_accuracy(swapped, text, owner, k=2) == pytest.approx((1.0, 1 / 3))


def test_augment_keeps_range_and_white_background():
    g = torch.Generator().manual_seed(0)
    rgba = torch.zeros(4, 16, 16, 4, dtype=torch.uint8)  # empty: background only
    plain = Augment(white_background=1.0, blur=1.0, max_shift=3, noise=0.0, brightness=0.0)
    torch.testing.assert_close(domain_data.augment(rgba, plain, g), torch.ones(4, 16, 16, 3))
    rgba = torch.randint(0, 256, (8, 16, 16, 4), dtype=torch.uint8, generator=g)
    out = domain_data.augment(rgba, Augment(white_background=0.3), g)
    assert out.shape == (8, 16, 16, 3) and out.min() >= 0 and out.max() <= 1


def test_cli_args_reproduce_the_config(tmp_path):
    import tyro

    from clipnerf_ns.app.training import TrainClip

    for focus in ((), ("back_tilt", "seat_width")):
        config = TrainClip(out=tmp_path / "a.safetensors", seed=3, templates="alt", arch=TINY_ARCH,
                           focus_questions=focus, focus_weight=2.0)
        args = domain.cli_args(config)
        assert tyro.cli(TrainClip, args=args) == config
    json.dumps(domain.jsonable(dataclasses.asdict(config)))


def test_train_clip_can_start_from_a_file_at_another_image_size(tmp_path, capsys):
    """--init trains a file further (the shipped CLIPs were trained at 64 px, then at 128 px): its
    weights are the start, the vision tower's positional grid resized, and the new file records the
    start's fingerprint and how it was made. Another architecture is refused in one line."""
    import hashlib

    from safetensors.torch import load_file

    base = tmp_path / "base.safetensors"
    entrypoint(["train-clip", "--out", str(base), *TINY_ARGS])
    grown = tmp_path / "grown.safetensors"
    entrypoint(["train-clip", "--out", str(grown), "--init", str(base), *TINY_ARGS, "--arch.image-size", "64", "--steps", "0"])
    before, after = load_file(str(base)), load_file(str(grown))
    key = "visual.attnpool.positional_embedding"
    assert before[key].shape[0] == 1 + 1 and after[key].shape[0] == 1 + 2 * 2
    assert all(torch.equal(before[k], after[k]) for k in before if k != key)
    meta = read_compact_metadata(grown)
    assert meta["preprocess"]["image_size"] == 64
    assert meta["training"]["init_sha256"] == hashlib.sha256(base.read_bytes()).hexdigest()
    assert meta["training"]["init_training"]["command"] == read_compact_metadata(base)["training"]["command"]
    assert f"--init {base}" in meta["training"]["command"]
    capsys.readouterr()

    with pytest.raises(SystemExit) as info:
        entrypoint(["train-clip", "--out", str(tmp_path / "other.safetensors"), "--init", str(base), *TINY_ARGS,
                    "--arch.text-width", "16"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "another architecture" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "other.safetensors").exists()


def test_the_judged_band_is_the_view_clipnerf_eval_judges_from():
    """`bench_clip.py` scores the judge at band "judged": every camera at `cameras.VIEW_DEG`, only
    the distance drawn; and `render_framed` renders fixed cameras as `render_views` frames its own."""
    from clipnerf_ns.data.cameras import VIEW_DEG
    from clipnerf_ns.data.synth import sample_object

    cameras = domain_data.random_cameras(5, np.random.default_rng(0), "judged")
    eye = cameras[:, :3, 3]
    azimuth = np.degrees(np.arctan2(eye[:, 1], eye[:, 0]))
    elevation = np.degrees(np.arcsin(eye[:, 2] / np.linalg.norm(eye, axis=1)))
    assert np.allclose(azimuth, VIEW_DEG[0]) and np.allclose(elevation, VIEW_DEG[1])
    assert np.ptp(np.linalg.norm(eye, axis=1)) > 0.01
    obj = sample_object("chairs", np.random.default_rng(3))
    drawn = domain_data.render_views(obj.mesh, "chairs", np.random.default_rng(1), 2, 32, "front", "category")
    again = domain_data.render_framed(obj.mesh, "chairs", domain_data.random_cameras(2, np.random.default_rng(1), "front"),
                                      32, "category")
    assert np.array_equal(drawn, again) and drawn[..., 3].max() == 255
