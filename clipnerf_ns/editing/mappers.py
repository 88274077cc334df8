"""The code mappers (paper section 3.2): CLIP embedding -> change of the shape or appearance code.

An edit is one forward pass: `z_s' = z_s + s * M_s(e)`, `z_a' = z_a + s * M_a(e)`, where `e` is
the CLIP embedding of a prompt or an exemplar image and `s` the user's strength.

Two options keep shape edits where the shape space decodes to solid objects (the space is clean
near the prior's mean and fogs with the distance from it):

- the shape mapper may also see the object's shape code (`M_s(e, z_s)`), so that one prompt can
  move each object its own way, and not at all an object that already has what it asks for;
- edited shape codes further than `max_prior_distance` prior deviations from the prior's mean (or
  than the object itself, if it lies further) are pulled back onto that sphere (`pull_into_prior`).

The shape mapper may also be read instead of trained (`ReadShapeMapper`): a CLIP trained through
renders of edited codes rewards the fog between objects, while its reading of clean views of the
learnt objects (renders of their codes, or their training views) is reliable. A ridge regression
from the learnt codes to those views' CLIP embeddings turns a prompt into a direction in code space, and an edit moves the object along it
until it scores as the top objects do. The step may also hold the predicted scores of the other
prompts of the library (`held_step`: InterFaceGAN's conditional manipulation, Shen et al. 2020, as
a soft constraint), so that an armchair edit does not also change the legs, and may be clamped into
the box the learnt codes span (`clamp_into_learnt`). A straight step cannot add what an attribute
needs but does not vary with linearly (arms need a back, and most chairs with a back have no
arms), so the step may start by taking what the codes that hold the attribute all share
(`holders_step`), a named choice (leg style) ending on one of its values. Where the code's first
dimensions are tied to attributes, the holders are every code that agrees with the top scorers on
the attributes the prompt names, and the object keeps its own values of the rest.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from clipnerf_ns.codes import Codes, prior_units


def prior_distance(z: Float[Tensor, "*batch d"], mean: Float[Tensor, " d"], std: Float[Tensor, " d"]) -> Float[Tensor, "*batch"]:
    """Root mean square over the dimensions of a code's offset from the prior's mean, in prior
    deviations (learnt codes and prior draws sit near 1)."""
    return ((z - mean) / std).pow(2).mean(-1).sqrt()


def pull_into_prior(
    z: Float[Tensor, "*batch d"], mean: Float[Tensor, " d"], std: Float[Tensor, " d"], radius: Union[float, Float[Tensor, "*batch"]],
) -> Float[Tensor, "*batch d"]:
    """`z` moved straight towards the prior's mean until it lies at most `radius` prior deviations
    from it (`prior_distance`); codes already that close are unchanged. Differentiable."""
    scale = (radius / prior_distance(z, mean, std).clamp_min(1e-12)).clamp(max=1.0)
    return mean + (z - mean) * scale[..., None]


class CodeMapper(nn.Module):
    """Two-layer MLP from a CLIP embedding (and optionally a code) to a code offset. Its output
    layer starts at zero, so an untrained mapper is the identity edit."""

    def __init__(self, clip_dim: int, code_dim: int, hidden: int = 256):
        super().__init__()
        self.hidden = nn.Linear(clip_dim, hidden)
        self.out = nn.Linear(hidden, code_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, embedding: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_code"]:
        return self.out(nn.functional.relu(self.hidden(embedding)))


def fit_code_to_clip(
    units: Float[Tensor, "n d"], embeddings: Float[Tensor, "n c"], ridge: float,
) -> Float[Tensor, "d c"]:
    """B of the ridge regression `embeddings ~ units @ B + intercept` (both centred; `ridge` times
    the identity added to the codes' Gram matrix)."""
    u = units - units.mean(0)
    e = embeddings - embeddings.mean(0)
    gram = u.T @ u + ridge * torch.eye(u.shape[1], dtype=u.dtype, device=u.device)
    return torch.linalg.solve(gram, u.T @ e)


def held_step(
    gradient: Float[Tensor, "n d"], covariance: Float[Tensor, "d d"], held: Optional[Float[Tensor, "k d"]],
    hold: float, similarity: float,
) -> Float[Tensor, "n d"]:
    """The direction of a read edit's step: `Sigma a` (the code difference between objects that score
    high and low along the score's gradient `a`), or, with `held` (other prompts' score gradients),
    the step of least `s^T Sigma^-1 s + hold * sum_j (h_j . s)^2` per unit of `a . s`, each `h_j`
    scaled to unit `h^T Sigma h`, so that the other prompts' predicted scores change less. Gradients
    whose covariance cosine with `a` is `similarity` or more (the prompt's synonyms, its opposite)
    are not held. Solved by the Woodbury identity: no inverse of Sigma."""
    step = gradient @ covariance
    if held is None or held.shape[0] == 0 or hold <= 0:
        return step
    unit = held / torch.einsum("kd,de,ke->k", held, covariance, held).clamp_min(1e-12).sqrt()[:, None]
    cosine = (step @ unit.T) / (gradient * step).sum(-1, keepdim=True).clamp_min(1e-12).sqrt()
    rows = unit * (cosine.abs() < similarity)[..., None]  # (n, k, d): each edit's held gradients
    rows_sigma = rows @ covariance
    system = torch.eye(held.shape[0], dtype=held.dtype, device=held.device) / hold + rows_sigma @ rows.transpose(1, 2)
    weights = torch.linalg.solve(system, rows_sigma @ gradient[..., None])
    return step - (rows_sigma.transpose(1, 2) @ weights)[..., 0]


def read_shape_change(
    units: Float[Tensor, "n d"], direction: Float[Tensor, "n c"], code_to_clip: Float[Tensor, "d c"],
    learnt: Float[Tensor, "m d"], covariance: Float[Tensor, "d d"], percentile: float,
    held: Optional[Float[Tensor, "k c"]] = None, hold: float = 0.0, similarity: float = 0.5,
    among: Optional[Bool[Tensor, "n m"]] = None,
) -> Float[Tensor, "n d"]:
    """The change (prior units) that raises each code's predicted CLIP score along `direction`
    (prompt minus source embedding) to the `percentile`-th of the learnt codes' predicted scores
    (of those in `among`, each code's row, when given), or nothing where it is already there. The
    step follows the learnt codes' covariance (`Sigma a`, the code difference between objects that
    score high and low): straight along the score's gradient `a` it leaves the learnt codes' span,
    and edits stop showing the attribute. `held` (other prompts' directions in CLIP space), `hold`,
    `similarity`: see `held_step`."""
    gradient = direction @ code_to_clip.T  # a: the predicted score's gradient in code space
    scores = gradient @ learnt.T
    target = torch.nanquantile(scores if among is None else scores.masked_fill(~among, float("nan")), percentile / 100.0, dim=-1)
    shortfall = (target - (units * gradient).sum(-1)).clamp_min(0.0)
    step = held_step(gradient, covariance, None if held is None else held @ code_to_clip.T, hold, similarity)
    return step * (shortfall / (gradient * step).sum(-1).clamp_min(1e-12))[:, None]


def gaussian_step(units: Float[Tensor, "n d"], learnt: Float[Tensor, "m d"], members: Bool[Tensor, "n m"],
                  noise: Union[float, Float[Tensor, "n d"]]) -> Float[Tensor, "n d"]:
    """The step to the mean of the Gaussian fitted to each code's `members` among the learnt codes
    (one row per code: mean `mu`, covariance `S`) given the code `u` seen through independent noise
    of variance `noise` per dimension (`D`, diagonal): `D (S + D)^-1 (mu - u)`. Where the noise is
    near zero the code keeps its own value, and the rest moves as the members with that value do."""
    weights = members.to(units.dtype) / members.sum(-1, keepdim=True)
    mean = weights @ learnt
    centred = learnt[None] - mean[:, None]
    spread = torch.einsum("nm,nmd,nme->nde", weights, centred, centred)
    noise = torch.diag_embed(torch.as_tensor(noise, dtype=units.dtype, device=units.device).expand_as(units))
    return (noise @ torch.linalg.solve(spread + noise, (mean - units)[..., None]))[..., 0]


def named_attributes(holding: Bool[Tensor, "n m"], learnt: Float[Tensor, "m d"], attributes: Sequence[Sequence[int]],
                     ratio: float) -> Bool[Tensor, "n a"]:
    """Which of the tied `attributes` (groups of dimensions) a prompt names: those whose mean among its
    holders moves from the learnt codes' mean (in their standard deviations) by at least `ratio` of
    the most moved attribute's shift. Armchair holders have arms (1.7) and, less so, taller backs (0.7)."""
    weights = holding.to(learnt.dtype) / holding.sum(-1, keepdim=True)
    shift = ((weights @ learnt) - learnt.mean(0)).abs() / learnt.std(0).clamp_min(1e-12)
    moved = torch.stack([shift[:, list(group)].amax(-1) for group in attributes], -1)
    return moved >= ratio * moved.amax(-1, keepdim=True)


def agreeing_codes(holding: Bool[Tensor, "n m"], named: Bool[Tensor, "n a"], learnt: Float[Tensor, "m d"],
                   attributes: Sequence[Sequence[int]], minimum: int = 8) -> Bool[Tensor, "n m"]:
    """The learnt codes that agree with the holders on every named attribute: on a choice the holders'
    most common value; on a number or a yes/no, nearer the holders' median than the learnt codes'
    median. So every armchair holds "an armchair", office chairs among them, not only those whose
    views the CLIP ranks highest (which share more than arms). A row with fewer than `minimum` such
    codes keeps its holders."""
    agree = torch.ones_like(holding)
    for index, group in enumerate(map(list, attributes)):
        if len(group) > 1:
            values = learnt[:, group].argmax(-1)
            common = (holding.to(learnt.dtype) @ nn.functional.one_hot(values, len(group)).to(learnt.dtype)).argmax(-1)
            agrees = values[None] == common[:, None]
        else:
            column = learnt[:, group[0]]
            holders_median = torch.where(holding, column[None], float("nan")).nanmedian(-1).values
            agrees = (column[None] - holders_median[:, None]).abs() < (column - column.median()).abs()[None]
        agree &= agrees | ~named[:, index:index + 1]
    return torch.where(agree.sum(-1, keepdim=True) >= minimum, agree, holding)


def held_noise(units: Float[Tensor, "n d"], holding: Bool[Tensor, "n m"], learnt: Float[Tensor, "m d"],
               named: Bool[Tensor, "n a"], attributes: Sequence[Sequence[int]], shared: float,
               held: float = 1e-4, taken: float = 1e4) -> Float[Tensor, "n d"]:
    """The noise through which `gaussian_step` sees each code: `held` (near zero: the code keeps its
    value) along the tied attributes the prompt does not name where the code's values lie within the
    holders' range (an armchair keeps its back height); `taken` (the holders' value given the rest)
    along an attribute whose value lies further outside that range than twice the holders' standard
    deviation there, a value no holder has (a stool's 'no back' height, asked for arms; `holders_step`
    restores a pedestal's leg count, asked for slats, after the step); `shared` elsewhere."""
    inf = torch.tensor(float("inf"), dtype=units.dtype, device=units.device)
    low = torch.where(holding[..., None], learnt[None], inf).amin(1)
    high = torch.where(holding[..., None], learnt[None], -inf).amax(1)
    weights = holding.to(units.dtype) / holding.sum(-1, keepdim=True)
    spread = (weights @ learnt.pow(2) - (weights @ learnt).pow(2)).clamp_min(0).sqrt()
    outside = torch.maximum(low - units, units - high)  # > 0 outside the holders' range
    noise = torch.full_like(units, shared)
    for index, group in enumerate(map(list, attributes)):
        within = (outside[:, group] <= 0).all(-1, keepdim=True)
        foreign = (outside[:, group] > 2 * spread[:, group]).any(-1, keepdim=True)
        keep = within & ~named[:, index:index + 1]
        noise[:, group] = torch.where(foreign, taken, torch.where(keep, held, shared))
    return noise


def fixed_by_value(learnt: Float[Tensor, "m d"], group: Sequence[int], attributes: Sequence[Sequence[int]],
                   tolerance: float = 0.1) -> Bool[Tensor, "k a"]:
    """For each value of the choice `group`, which of the other `attributes` every learnt code with
    that value shares (spread at most `tolerance` of the attribute's spread over all codes): what the
    value fixes. No back fixes the back height and no arms; a pedestal fixes the leg count; a
    pedestal does not fix the back style (office chairs have solid backs or none)."""
    values = learnt[:, list(group)].argmax(-1)
    overall = learnt.std(0)
    rows = []
    for value in range(len(group)):
        members = learnt[values == value]
        alike = members.std(0) <= tolerance * overall if members.shape[0] > 1 else torch.zeros_like(overall, dtype=torch.bool)
        rows.append(torch.stack([alike[list(other)].all() & (list(other) != list(group)) for other in attributes]))
    return torch.stack(rows)


def top_scorers(gradient: Float[Tensor, "n d"], learnt: Float[Tensor, "m d"], fraction: float) -> tuple[Bool[Tensor, "n m"], Tensor]:
    """Per row of `gradient` (a predicted score's gradient in code space), the `fraction` of learnt
    codes with the highest predicted score, and the score they start at."""
    scores = gradient @ learnt.T
    threshold = torch.quantile(scores, 1.0 - fraction, dim=-1)
    return scores >= threshold[:, None], threshold


def holders_step(
    units: Float[Tensor, "n d"], gradient: Float[Tensor, "n d"], learnt: Float[Tensor, "m d"], fraction: float, shared: float,
    attributes: Sequence[Sequence[int]] = (), named: Optional[float] = None,
) -> tuple[Float[Tensor, "n d"], Bool[Tensor, "n d"]]:
    """The step that gives each code what the codes holding the prompt's attribute share: the
    `fraction` of learnt codes with the highest predicted score (`gradient`: the score's gradient
    in code space) is fitted by a Gaussian and each code moves to its mean given the code
    (`gaussian_step`). Along directions in which the holders vary less than `shared` the code takes
    their value (an armchair's back, for a stool); along those in which they vary more it keeps its
    own (its legs). Codes already scoring as the holders do not move.

    `attributes`: the dimensions tied to each attribute of the code (`attribute_codes`). A named
    choice (one dimension per value, the largest is the value) is something a Gaussian cannot say:
    it takes away a value no holder has (an office chair's pedestal, for an armchair) but spreads
    the group over the rest, so that no value is on. So each choice ends on the values of the
    holder nearest to the code there, and a code whose value that changes is fitted again to the
    holders with the new value (round-legged armchairs), so that what goes with the value (four
    legs, not five) follows it; the holders narrow choice by choice, so that a later refit keeps
    the values chosen before it.

    `named` (a ratio, see `named_attributes`): the top scorers share more than the prompt names
    (armchair holders have taller backs, slatted ones lower backs). The holders become every learnt
    code that agrees with them on the attributes the prompt names (`agreeing_codes`), and the code
    keeps its own values of the others where some holder has them; a value none has becomes theirs
    (`held_noise`). A choice value none has that the named attributes do not need changed (an office
    chair's pedestal, for slats; not a stool's missing back, for arms, which fixes 'no arms':
    `fixed_by_value`) is kept, with what it fixes, through the rest of the edit: the tied space
    composes a slatted office chair though the collection has none.

    Returns the step and a mask of the dimensions the rest of the edit must leave as they are."""
    holding, threshold = top_scorers(gradient, learnt, fraction)
    noise: Union[float, Tensor] = shared
    names: Optional[Tensor] = None  # (n, a): the attributes each prompt names, when asked to find them
    if attributes and named is not None:
        names = named_attributes(holding, learnt, attributes, named)
        holding = agreeing_codes(holding, names, learnt, attributes)
        noise = held_noise(units, holding, learnt, names, attributes, shared)
    step = gaussian_step(units, learnt, holding, noise)
    keep = torch.zeros_like(units, dtype=torch.bool)
    for index, group in ((i, list(g)) for i, g in enumerate(attributes) if len(g) > 1):
        distance = torch.cdist((units + step)[:, group], learnt[:, group]).masked_fill(~holding, float("inf"))
        nearest = distance.argmin(-1)
        values = learnt[:, group].argmax(-1)
        own = units[:, group].argmax(-1)
        changed = values[nearest] != own
        holding = holding & ((values[None] == values[nearest][:, None]) | ~changed[:, None])
        if names is not None:  # a value that changes is not held
            noise[:, group] = torch.where(changed[:, None], shared, noise[:, group])
            fixes = fixed_by_value(learnt, group, attributes)[own]
            kept = changed & ~names[:, index] & ~(fixes & names).any(-1)
            for row in kept.nonzero()[:, 0].tolist():
                keep[row, [d for a, g in enumerate(attributes) if a == index or fixes[row, a] for d in g]] = True
        step = torch.where(changed[:, None], gaussian_step(units, learnt, holding, noise), step)
        step[:, group] = learnt[nearest][:, group] - units[:, group]
    lacking = (units * gradient).sum(-1) < threshold
    return step * lacking[:, None], keep & lacking[:, None]


def free_blends(edited: Float[Tensor, " d"], learnt: Float[Tensor, "m d"], tied: int, count: int) -> Float[Tensor, "k d"]:
    """The edited code (prior units) and up to `count` variants of it whose free dimensions (those
    after the first `tied`) lie half way to those of the learnt codes nearest it on the tied ones:
    the same attributes, realised as chairs that have them realise the rest (`Editor` keeps the one
    that renders cleanest). The free dimensions say what the tied ones do not, so a tied edit that
    keeps the object's own can land where no learnt chair is, and decode to fog."""
    nearest = torch.cdist(edited[None, :tied], learnt[:, :tied])[0].argsort()[:count]
    variants = edited.expand(len(nearest), -1).clone()
    variants[:, tied:] = 0.5 * (variants[:, tied:] + learnt[nearest, tied:])
    return torch.cat([edited[None], variants])


def clamp_into_learnt(units: Float[Tensor, "n d"], change: Float[Tensor, "n d"],
                      learnt: Float[Tensor, "m d"]) -> Float[Tensor, "n d"]:
    """`change`, cut so that `units + change` stays, dimension by dimension, within the range of
    the learnt codes (prior units); a dimension already outside it is not pushed further out."""
    low = torch.minimum(learnt.min(0).values, units)
    high = torch.maximum(learnt.max(0).values, units)
    return torch.minimum(torch.maximum(units + change, low), high) - units


class ReadShapeMapper(nn.Module):
    """A shape mapper with no trained weights: `fit` reads it off the learnt codes of the mapper
    objects and the CLIP embeddings of views of them (see the module docstring). Its state
    (buffers) is saved with the mappers'."""

    def __init__(self, clip_dim: int, code_dim: int, objects: int, percentile: float = 99.0,
                 held_prompts: int = 0, hold: float = 0.0, similarity: float = 0.5, clamp: bool = False,
                 holders: Optional[float] = None, shared: float = 0.1, attributes: Sequence[Sequence[int]] = (),
                 named: Optional[float] = None, clean: int = 0, holders_rank: str = "direction"):
        """`held_prompts`: how many prompts' directions the step may hold (`hold`, `similarity`: see
        `held_step`); `clamp`: edits stay within the learnt codes' range (`clamp_into_learnt`);
        `holders`, `shared`, `attributes`, `named`: first give edits what the top `holders` fraction of codes share (`holders_step`),
        ranked for a text prompt by the prompt itself or by its direction (`holders_rank`: "prompt", "direction");
        `clean`: how many `free_blends` variants an edit of tied codes offers the editor."""
        super().__init__()
        self.percentile, self.hold, self.similarity, self.clamp = percentile, hold, similarity, clamp
        self.holders_rank = holders_rank
        self.holders, self.shared, self.attributes, self.named = holders, shared, attributes, named
        self.clean = clean if attributes else 0  # the variants keep the tied dimensions: none without them
        self.register_buffer("code_to_clip", torch.zeros(code_dim, clip_dim))
        self.register_buffer("learnt", torch.zeros(objects, code_dim))  # in prior units
        self.register_buffer("covariance", torch.zeros(code_dim, code_dim))
        self.register_buffer("sources", torch.zeros(2, clip_dim))  # the neutral prompt's embedding, the mean view's
        self.register_buffer("held", torch.zeros(held_prompts, clip_dim))  # the library prompts' directions

    def fit(self, units: Float[Tensor, "m d"], view_embeddings: Float[Tensor, "m c"], neutral: Float[Tensor, " c"],
            ridge: float, held_embeddings: Optional[Float[Tensor, "k c"]] = None) -> None:
        """Fit to the mapper objects' codes (prior units) and their views' mean CLIP embeddings;
        `held_embeddings`: the prompts whose predicted scores edits hold."""
        self.code_to_clip.copy_(fit_code_to_clip(units, view_embeddings, ridge))
        self.learnt.copy_(units)
        self.covariance.copy_(torch.cov(units.T))
        self.sources.copy_(torch.stack([neutral, view_embeddings.mean(0)]))
        if held_embeddings is not None:
            self.held.copy_(held_embeddings - neutral)

    def forward(self, embedding: Float[Tensor, "n c"], units: Float[Tensor, "n d"], from_image: bool = False) -> Tensor:
        """The change of `units` (prior units) that `embedding` asks for: measured from the neutral
        prompt's embedding, or for an exemplar image from the mean view's."""
        direction = embedding.expand(units.shape[0], -1) - self.sources[int(from_image)]
        shared, keep = torch.zeros_like(units), torch.zeros_like(units, dtype=torch.bool)
        among = None  # the learnt codes the step's target is taken among: all of them
        if self.holders is not None:
            # the prompt itself: the top scorers along its direction from "a chair" to "a chair with
            # a short back" are stools, as the linear score runs on past the shortest back; the step
            # then stops at the score of the prompt's holders, not at the stools'
            by_prompt = self.holders_rank == "prompt" and not from_image
            ranking = (embedding.expand_as(direction) if by_prompt else direction) @ self.code_to_clip.T
            shared, keep = holders_step(units, ranking, self.learnt, self.holders, self.shared, self.attributes, self.named)
            if by_prompt:
                among = top_scorers(ranking, self.learnt, self.holders)[0]
        change = shared + read_shape_change(units + shared, direction, self.code_to_clip, self.learnt, self.covariance,
                                            self.percentile, self.held, self.hold, self.similarity, among)
        change = change.masked_fill(keep, 0.0)
        return clamp_into_learnt(units, change, self.learnt) if self.clamp else change


class Mappers(nn.Module):
    """The shape mapper and the appearance mapper, trained separately."""

    def __init__(self, clip_dim: int, shape_dim: int, appearance_dim: int, hidden: int = 256,
                 shape_sees_code: bool = False, max_prior_distance: Optional[float] = None,
                 read_shape: Optional[dict] = None, appearance_sees_code: bool = False):
        """`read_shape`: the options of a `ReadShapeMapper` (objects, percentile, ...) in place of the trained shape mapper."""
        super().__init__()
        if read_shape is not None:
            self.shape = ReadShapeMapper(clip_dim, shape_dim, **read_shape)
        else:
            self.shape = CodeMapper(clip_dim + (shape_dim if shape_sees_code else 0), shape_dim, hidden)
        self.appearance = CodeMapper(clip_dim + (appearance_dim if appearance_sees_code else 0), appearance_dim, hidden)
        self.shape_sees_code, self.appearance_sees_code = shape_sees_code, appearance_sees_code
        self.max_prior_distance = max_prior_distance

    @property
    def shape_is_read(self) -> bool:
        return isinstance(self.shape, ReadShapeMapper)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.shape_is_read and "shape.held" not in state_dict:
            # read before held prompts existed: zero directions hold nothing, the step stays Sigma a
            state_dict = {**state_dict, "shape.held": torch.zeros_like(self.shape.held)}
        return super().load_state_dict(state_dict, strict, assign)

    def change(self, target: str, embedding: Float[Tensor, "n d_clip"], codes: Codes, prior: tuple[Codes, Codes],
               from_image: bool = False) -> Tensor:
        """The change of `codes` (n objects) that `embedding` (of a prompt, or of an exemplar image:
        `from_image`) asks for, at strength 1. `prior`: the NeRF's code prior (mean, std), in whose
        units the shape mapper sees and bounds codes."""
        if target != "shape":
            if not self.appearance_sees_code:
                return self.appearance(embedding)
            scaled = prior_units(*prior, codes)[1] / codes.z_a.shape[-1] ** 0.5  # about unit norm, as the embedding
            return self.appearance(torch.cat([embedding.expand(codes.z_a.shape[0], -1), scaled], -1))
        mean, std = prior[0].z_s, prior[1].z_s
        z_s = codes.z_s
        units = prior_units(*prior, codes)[0]
        if self.shape_is_read:
            return self._bounded(z_s, self.shape(embedding, units, from_image) * std, mean, std)
        # the code in prior units over sqrt(d): about unit norm, as the CLIP embedding is, so neither input drowns the other
        scaled = units / z_s.shape[-1] ** 0.5
        inputs = torch.cat([embedding.expand(z_s.shape[0], -1), scaled], -1) if self.shape_sees_code else embedding
        return self._bounded(z_s, self.shape(inputs), mean, std)

    def shape_variants(self, z_s: Float[Tensor, " d"], change: Float[Tensor, " d"], prior: tuple[Codes, Codes]) -> Tensor:
        """The read shape mapper's `change` of one code `z_s`, and its `free_blends` variants (rows;
        the first is `change`), within the same bound; just `change` when it offers none."""
        clean = self.shape.clean if self.shape_is_read else 0
        if not clean:
            return change[None]
        mean, std = prior[0].z_s, prior[1].z_s
        tied = sum(len(group) for group in self.shape.attributes)
        variants = free_blends((z_s + change - mean) / std, self.shape.learnt, tied, clean)[1:] * std + mean
        return torch.cat([change[None], self._bounded(z_s.expand(len(variants), -1), variants - z_s, mean, std)])

    def _bounded(self, z_s: Tensor, change: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """`change`, pulled back within `max_prior_distance` when set."""
        if self.max_prior_distance is None:
            return change
        # never further out than the object itself: an unchanged code stays unchanged
        radius = prior_distance(z_s, mean, std).clamp(min=self.max_prior_distance)
        return pull_into_prior(z_s + change, mean, std, radius) - z_s
