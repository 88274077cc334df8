"""Photo-like inversion (not a test): held-out chairs rendered as a photo would show them, from
cameras the inversion is not told, then inverted by `clipnerf invert`'s code.

Each photo is a mesh render (the collections' ray caster) of a held-out chair: real PartNet chairs
(`--partnet`, those of `--collection`'s held-out split, coloured by part) and procedural ones (the
run's own collection's held-out split, regenerated from its seed). Its camera is drawn at random:
azimuth within 90 degrees of the front, elevation 5 to 40, distance 1.6 to 4 (so the field of
view that frames the chair varies from about 15 to 45 degrees), aimed a little off the chair's
centre, framed tight (margin 2% to 12%) in a portrait or landscape photo, the chair off-centre
along the long side; lit by one key light from a random direction of the upper hemisphere, a fill
light and an ambient term of random strengths. Each photo is inverted as `clipnerf invert` would
(`--frame photo`: padded to a square, as if from the run's camera; `--frame object`: a square
cut around the object, the camera free in distance, roll and aim), and the bench prints the PSNR on
the input, the error of the recovered viewing direction (the angle between the true and the
recovered directions from the chair's centre to the camera; for a stool, the least over the
rotations of its legs' symmetry) and the time.

    OMP_NUM_THREADS=1 python bench/bench_photo_inversion.py --config RUN/config.yml \\
        --partnet ../shared/data/partnet --collection MIXED_COLLECTION [--synth SYNTH_COLLECTION] [--photos 2] [--procedural 6] \\
        [--mappers MAPPER_RUN/config.yml [--edits "a red chair" ...]]

With --mappers, each chair inverted with `--frame object` is also recoloured by each of --edits
(the appearance mapper), rendered as its target is framed, and the bench prints the Delta E to
the named colour before and after: of the chair's mean colour for a whole-object prompt ("a red
chair", as `clipnerf eval` measures colour edits), and for a part prompt ("a chair with a red
seat") of the mean colour of that part's pixels (real chairs: the mesh's PartNet labels, rendered
from the photo's camera and cut as the photo was), with the colour change of the rest of the
chair; and the silhouette IoU.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from clipnerf_ns.app.collections import synth_object_again
from clipnerf_ns.app.prompt_meanings import named_part_color_of
from clipnerf_ns.codes import model_fingerprint
from clipnerf_ns.data.images import to_uint8
from clipnerf_ns.data.meshes import discover_meshes, load_object
from clipnerf_ns.data.photo_like import direction_error_deg, photo_of
from clipnerf_ns.data.photos import Photo, make_target, object_window
from clipnerf_ns.editing.inversion_encoder import run_encoder
from clipnerf_ns.editing.invert import InversionConfig, run_inversion, start_inversion
from clipnerf_ns.pipelines.runs import load_run, nerf_of

FRAMINGS = {"photo": {"frame": "photo"}, "object": {"frame": "object"}}


def symmetry_of(attributes: dict) -> int:
    """Rotations about the vertical that leave a backless, armless chair alike: its legs'."""
    if attributes.get("back_style") == "none" and not attributes.get("armrests"):
        return int(attributes.get("leg_count") or 1)
    return 1


def held_out_chairs(synth: Path, partnet: Path | None, collection: Path | None, procedural: int, seed: int) -> list:
    """(name, coloured mesh, attributes) of the held-out real chairs of `collection` and of the first
    `procedural` held-out chairs of the `clipnerf synth` collection `synth`."""
    chairs = []
    if partnet is not None and collection is not None:
        held = {o["id"] for o in json.loads((collection / "collection.json").read_text())["objects"] if o["split"] == "test"}
        for index, source in enumerate(discover_meshes(partnet)):
            if source.object_id in held:  # each chair its own colours (one generator for all drew the same ones)
                mesh, attributes, _ = load_object(source, np.random.default_rng([seed, index]), colors="parts")
                chairs.append((f"real {source.object_id}", mesh, attributes))
    if procedural == 0:
        return chairs
    document = json.loads((synth / "collection.json").read_text())
    options = document["generator"].get("options", {})
    if "num_objects" not in options:
        raise SystemExit(f"{synth}: not a collection of clipnerf synth (pass its procedural part with --synth)")
    held = [i for i, obj in enumerate(document["objects"]) if obj["split"] == "test"][:procedural]
    for index in held:
        made = synth_object_again(options, index)
        chairs.append((document["objects"][index]["id"], made.mesh, made.attributes))
    return chairs


def part_pixels(shot, inversion) -> dict:
    """The photo's part masks cut and resized as the inversion's target was (a pixel belongs to a
    part when the part covers more than half of it)."""
    window = object_window(shot.photo.mask, inversion.config.fill) if inversion.config.frame == "object" else None
    cut = {}
    for name, mask in shot.parts.items():
        as_photo = Photo(torch.zeros(*mask.shape, 3), mask.float(), "alpha")
        cut[name] = make_target(as_photo, inversion.target.resolution, 45.0, torch.zeros(3), window).mask > 0.5
    return cut


def colour_edit_rows(editor, inversion, shot, prompts: list[str], name: str) -> tuple[list[dict], list[np.ndarray]]:
    """Each colour prompt applied to the inverted codes (appearance mapper), rendered as the target
    is framed: a whole-object prompt measured as `clipnerf eval` measures colour edits, a part
    prompt ("a chair with a red seat") on the pixels of that part of the photo (the mesh's labels).
    Returns the rows and the edited renders."""
    from clipnerf_ns.app.edit_evaluation import image_measures, part_measures
    from clipnerf_ns.app.prompt_meanings import named_color_of
    from clipnerf_ns.editing.edit import Edit

    codes, before = inversion.result_codes(), inversion.render()
    parts = part_pixels(shot, inversion)
    rows, renders = [], []
    for prompt in prompts:
        after = inversion.render(codes=editor.apply(Edit(prompt=prompt, target="appearance"), codes))
        renders.append(to_uint8(after["rgb"]))
        part_colour = named_part_color_of(prompt, "chair")
        if part_colour is None:
            rows.append({"chair": name, "prompt": prompt, "part": None, **image_measures(before, after, named_color_of(prompt, "chair"))})
        elif part_colour[0] in parts:
            part, colour = part_colour
            rows.append({"chair": name, "prompt": prompt, "part": part, **part_measures(before, after, parts[part], colour)})
        else:
            continue
        print(json.dumps({k: v for k, v in rows[-1].items() if k in ("chair", "prompt", "part", "part_pixels", "delta_e_before",
                                                                     "delta_e_after", "rest_color_change", "iou")}))
    return rows, renders


def print_colour_edits(rows: list[dict]) -> None:
    """Whole-object and part colour edits: how many came closer to the named colour."""
    for kind, chosen in (("whole-object", [r for r in rows if r["part"] is None]),
                         ("part", [r for r in rows if r["part"] is not None and r["delta_e_before"] is not None])):
        if not chosen:
            continue
        closer = [r["delta_e_after"] < r["delta_e_before"] for r in chosen]
        line = (f"== {kind} colour edits of the inverted chairs ({len(chosen)}): Delta E of the "
                f"{'named part' if kind == 'part' else 'chair'} to the named colour "
                f"{np.mean([r['delta_e_before'] for r in chosen]):.1f} -> {np.mean([r['delta_e_after'] for r in chosen]):.1f}, "
                f"closer in {sum(closer)} ({np.mean(closer):.0%}), silhouette IoU min {min(r['iou'] for r in chosen):.3f}")
        if kind == "part":
            rest = [r["rest_color_change"] for r in chosen if r["rest_color_change"] is not None]
            hidden = sum(1 for r in rows if r["part"] is not None and r["delta_e_before"] is None)
            line += (f"; the rest of the chair changed by Delta E {np.mean(rest):.1f} on average "
                     f"({hidden} edits of a part not in view skipped)")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="a clip-nerf run's config.yml (with its inversion encoder)")
    parser.add_argument("--partnet", type=Path, default=None, help="PartNet chairs (../shared/data/partnet)")
    parser.add_argument("--collection", type=Path, default=None, help="the collection whose held-out real chairs to use")
    parser.add_argument("--procedural", type=int, default=6, help="held-out procedural chairs (the first of the split)")
    parser.add_argument("--synth", type=Path, default=None,
                        help="the clipnerf synth collection of the procedural chairs (default: the run's own)")
    parser.add_argument("--photos", type=int, default=2, help="photos per chair")
    parser.add_argument("--size", type=int, default=160, help="the photos' short side in pixels")
    parser.add_argument("--framings", nargs="+", choices=list(FRAMINGS), default=list(FRAMINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=Path, default=None, help="write input | inverted render tiles here")
    parser.add_argument("--mappers", type=Path, default=None,
                        help="a mapper run of the same stage 1: each --frame object inversion is then edited by --edits")
    parser.add_argument("--edits", nargs="+", default=None,
                        help="colour prompts, whole-object ('a red chair') or of a part ('a chair with a red seat'; "
                             "measured on real chairs, whose parts are labelled); default: four whole-object "
                             "prompts and the library's part prompts")
    parser.add_argument("--pictured", nargs="*", default=None,
                        help="edits drawn in --grid after the inversion (default: the first whole-object and the first part prompt)")
    args = parser.parse_args()
    run_config, pipeline = load_run(args.config)
    model = nerf_of(pipeline)
    model.requires_grad_(False)
    encoder = run_encoder(args.config, model_fingerprint(model.field), "auto")
    rng = np.random.default_rng(args.seed)
    synth = args.synth or Path(run_config.pipeline.datamanager.data)
    chairs = held_out_chairs(synth, args.partnet, args.collection, args.procedural, args.seed)
    editor = None
    if args.mappers is not None:
        from clipnerf_ns.editing.edit import editor_for

        mapper_model = load_run(args.mappers)[1].model
        editor = editor_for(mapper_model)
        if args.edits is None:
            args.edits = ["a red chair", "a blue chair", "a yellow chair", "a black chair"] + [
                p for p in mapper_model.library.for_target("appearance") if named_part_color_of(p, "chair") is not None]
        if args.pictured is None:
            whole = [p for p in args.edits if named_part_color_of(p, "chair") is None]
            args.pictured = whole[:1] + [p for p in args.edits if p not in whole][:1]
        if not set(args.pictured) <= set(args.edits):
            parser.error("--pictured must be among --edits")
    rows, tiles, colour_edits = [], [], []
    for name, mesh, attributes in chairs:
        for _ in range(args.photos):
            shot = photo_of(mesh, rng, args.size)
            for framing in args.framings:
                config = replace(InversionConfig(seed=args.seed), **FRAMINGS[framing])
                start = time.perf_counter()
                inversion = start_inversion(model, shot.photo, config, None, encoder)
                run_inversion(inversion, progress=False)
                seconds = time.perf_counter() - start
                error = direction_error_deg(shot.direction, inversion.pose(detach=True), symmetry_of(attributes))
                rows.append({"chair": name, "framing": framing, "psnr": inversion.psnr(), "seconds": seconds,
                             "direction_error_deg": error})
                print(json.dumps(rows[-1]), flush=True)
                tiles.append(np.concatenate([to_uint8(inversion.target.rgb), to_uint8(inversion.render()["rgb"])], 1))
                if editor is not None and framing == "object":
                    edit_rows, renders = colour_edit_rows(editor, inversion, shot, args.edits, name)
                    colour_edits += edit_rows
                    tiles[-1] = np.concatenate([tiles[-1]] + [renders[args.edits.index(p)] for p in args.pictured], 1)
    for framing in args.framings:
        for kind in ("real", "procedural"):
            chosen = [r for r in rows if r["framing"] == framing and r["chair"].startswith("real") == (kind == "real")]
            if chosen:
                print(f"== {kind} chairs, --frame {framing}: {len(chosen)} photos, PSNR on the input median "
                      f"{np.median([r['psnr'] for r in chosen]):.2f} dB (mean {np.mean([r['psnr'] for r in chosen]):.2f}); "
                      f"direction error median {np.median([r['direction_error_deg'] for r in chosen]):.1f} deg "
                      f"(within 15: {np.mean([r['direction_error_deg'] <= 15 for r in chosen]):.0%}); "
                      f"{np.mean([r['seconds'] for r in chosen]):.0f} s per photo")
    if colour_edits:
        print_colour_edits(colour_edits)
    if args.grid is not None and tiles:
        save_grid(tiles, len(args.framings), args.grid)


def save_grid(tiles: list[np.ndarray], framings: int, path: Path, blocks: int = 3) -> None:
    """One row per photo (input | render for each framing), the rows in `blocks` side by side, at 2x."""
    from PIL import Image

    rows = [np.concatenate(tiles[i : i + framings], 1) for i in range(0, len(tiles), framings)]
    per_block = -(-len(rows) // blocks)
    rows += [np.full_like(rows[0], 255)] * (per_block * blocks - len(rows))
    gap = np.full((per_block * rows[0].shape[0], 8, 3), 255, np.uint8)
    columns = [np.concatenate(rows[b * per_block : (b + 1) * per_block], 0) for b in range(blocks)]
    grid = Image.fromarray(np.concatenate([part for column in columns for part in (column, gap)][:-1], 1))
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(path)
    print(f"wrote {path} (per photo: input | render, for each of {framings} framings)")


if __name__ == "__main__":
    main()
