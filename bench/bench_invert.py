"""Inversion figures (not a test): round trips on a trained run, ablations, and real chairs.

Round trip: render a training object's codes from a random view of the upper hemisphere
(elevation 5 to 65 degrees, as the training views), invert the render, and report the PSNR of
the re-render, the camera rotation error, and whether the true object seen from the recovered
camera reproduces the input (>= 30 dB: the view is right up to the object's own symmetry;
stools and swivel chairs look the same from several sides). Ablations rerun the first cases with
one switch changed. Real chairs: a collection rendered by `clipnerf render-meshes` from real
meshes; view 0 of each chair is inverted, and a held-out view of the same chair is compared with
the inverted codes rendered from that camera (novel-view quality).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/bench_invert.py [--config RUN/config.yml] \\
        --cases 20 [--real COLLECTION [--real-heldout]] --ablation-cases 10

Without --config, the shipped pretrained chairs model is used (its run folder is written to a
temporary folder first, as `make demo` does). When the run has an inversion encoder
(`clipnerf train-encoder`; the shipped model does), the round trips and the real chairs run from
both starts on the same cases (`--starts`): the coarse search then `--steps` steps, and the
encoder's guess then `encoder_steps` steps.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipnerf_ns.codes import Codes, model_fingerprint, psnr
from clipnerf_ns.data.cameras import Orbit, orbit_c2w, orbit_camera, orbit_vector
from clipnerf_ns.data.images import to_uint8
from clipnerf_ns.data.photos import Photo, read_photo
from clipnerf_ns.editing.inversion_encoder import run_encoder
from clipnerf_ns.editing.invert import InversionConfig, load_clip_for, rotation_error_deg, run_inversion, start_inversion
from clipnerf_ns.pipelines.runs import load_run, nerf_of

ABLATIONS = {
    "no noise": {"noise": 0.0},
    "joint instead of alternating": {"schedule": "joint"},
    "with CLIP term (0.1)": {"clip_weight": 0.1},
    "codes start at the prior mean": {"init_codes": "mean"},
}


def render_photo(model, codes: Codes, azimuth: float, elevation: float, resolution: int) -> tuple[Photo, torch.Tensor]:
    """A render as an RGBA photo (straight alpha), and the same render over white."""
    out = model.render_view(orbit_camera(resolution, azimuth, elevation), codes)
    alpha = out["accumulation"].clamp(1e-4, 1.0)
    return Photo(((out["rgb"] - (1.0 - alpha)) / alpha).clamp(0, 1), out["accumulation"][..., 0], "alpha"), out["rgb"]


def draw_cases(count: int, num_objects: int, seed: int) -> list[tuple[int, float, float]]:
    rng = np.random.default_rng(seed)
    lo, hi = np.sin(np.radians([5.0, 65.0]))
    return [(int(rng.integers(num_objects)), float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(lo, hi)))))
            for _ in range(count)]


ENCODER = None  # the run's inversion encoder, when it has one (set in main)


def invert(model, photo: Photo, config: InversionConfig, clip):
    start = time.perf_counter()
    inversion = start_inversion(model, photo, config, clip, ENCODER)
    run_inversion(inversion, progress=False)
    return inversion, time.perf_counter() - start


def angles(pose: torch.Tensor) -> tuple[float, float]:
    return math.degrees(float(pose[0])), math.degrees(float(pose[1]))


def round_trip(model, cases, config, clip, resolution: int, label: str, tiles: list | None = None) -> dict:
    rows = []
    for i, (index, azimuth, elevation) in enumerate(cases):
        truth = model.object_codes(torch.tensor(index)).detach()
        photo, shown = render_photo(model, truth, azimuth, elevation, resolution)
        inversion, seconds = invert(model, photo, config, clip)
        pose = inversion.pose(detach=True)
        error = rotation_error_deg(orbit_c2w(pose), orbit_c2w(orbit_vector(azimuth, elevation, 2.2)))
        from_found = model.render_view(orbit_camera(resolution, *angles(pose)), truth)["rgb"]
        equivalent = float(psnr(from_found, shown))
        rows.append({"object": index, "azimuth": azimuth, "elevation": elevation, "psnr": inversion.psnr(),
                     "pose_error_deg": error, "truth_from_found_view_psnr": equivalent, "seconds": seconds})
        print(f"  [{label}] case {i:2d} object {model.object_ids[index]} az {azimuth:5.1f} el {elevation:4.1f}: "
              f"PSNR {rows[-1]['psnr']:.2f} dB, pose error {error:6.2f} deg, truth from found view {equivalent:.1f} dB, "
              f"{seconds:.1f} s", flush=True)
        if tiles is not None and i < 6:
            novel = (azimuth + 120.0, 25.0)
            codes = inversion.result_codes()
            tiles.append([shown, inversion.render()["rgb"], model.render_view(orbit_camera(resolution, *novel), truth)["rgb"],
                          model.render_view(orbit_camera(resolution, *novel), codes)["rgb"]])
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    psnrs = np.array([r["psnr"] for r in rows])
    errors = np.array([r["pose_error_deg"] for r in rows])
    equivalent = np.array([r["truth_from_found_view_psnr"] >= 30.0 for r in rows])
    return {
        "cases": len(rows),
        "psnr_mean": float(psnrs.mean()), "psnr_median": float(np.median(psnrs)),
        "psnr_at_least_30": float((psnrs >= 30).mean()),
        "pose_error_mean": float(errors.mean()), "pose_error_median": float(np.median(errors)),
        "pose_error_at_most_5": float((errors <= 5).mean()),
        "view_equivalent": float(equivalent.mean()),
        "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
        "rows": rows,
    }


def real_chairs(model, root: Path, config, clip, tiles: list, heldout_only: bool = False) -> list[dict]:
    """Invert view 0 of every object (or every held-out one) of a render-meshes collection; compare a held-out view."""
    doc = json.loads((root / "collection.json").read_text())
    results = []
    for obj in doc["objects"]:
        if heldout_only and obj["split"] != "test":
            continue
        transforms = json.loads((root / obj["path"] / "transforms.json").read_text())
        frames = {f["file_path"]: f for f in transforms["frames"]}
        first, novel = frames[transforms["train_filenames"][0]], frames[transforms["val_filenames"][0]]
        photo = read_photo(root / obj["path"] / first["file_path"])
        inversion, seconds = invert(model, photo, config, clip)
        white = torch.ones(3)
        input_rgb = inversion.target.rgb
        c2w = torch.tensor(novel["transform_matrix"], dtype=torch.float32)
        eye = c2w[:3, 3]
        azimuth = math.degrees(math.atan2(float(eye[1]), float(eye[0])))
        elevation = math.degrees(math.asin(float(eye[2] / eye.norm())))
        novel_photo = read_photo(root / obj["path"] / novel["file_path"])
        truth = novel_photo.rgb * novel_photo.mask[..., None] + (1 - novel_photo.mask[..., None]) * white
        res = truth.shape[0]
        # the held-out view's own camera: its distance and field of view
        orbit = Orbit(float(eye.norm()), math.degrees(2 * math.atan(0.5 * transforms["w"] / transforms["fl_x"])))
        rendered = model.render_view(orbit_camera(res, azimuth, elevation, orbit), inversion.result_codes())["rgb"]
        results.append({"object": obj["id"], "psnr_input_view": inversion.psnr(), "psnr_novel_view": float(psnr(rendered, truth)),
                        "seconds": seconds, "novel_view": [azimuth, elevation]})
        print(f"  real {obj['id']}: input view {results[-1]['psnr_input_view']:.2f} dB, held-out view "
              f"{results[-1]['psnr_novel_view']:.2f} dB (az {azimuth:.0f}, el {elevation:.0f}), {seconds:.1f} s", flush=True)
        tiles.append([input_rgb, inversion.render()["rgb"], truth, rendered])
    return results


def save_grid(tiles: list[list[torch.Tensor]], path: Path, scale: int = 2) -> None:
    rows = [np.concatenate([to_uint8(t) for t in row], axis=1) for row in tiles]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    print(f"wrote {path} (columns: input | inverted render | novel view truth | novel view render)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None,
                        help="a clip-nerf run's config.yml (default: the shipped pretrained chairs model)")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--ablation-cases", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=Path, default=None, help="a collection written by clipnerf render-meshes")
    parser.add_argument("--real-heldout", action="store_true",
                        help="only the --real collection's held-out objects (for a run trained on the others)")
    parser.add_argument("--only", choices=["roundtrip", "ablations", "real"], action="append")
    parser.add_argument("--ablations", nargs="*", default=None, help="names of ABLATIONS to run (default: all)")
    parser.add_argument("--starts", nargs="+", choices=["search", "encoder"], default=None,
                        help="starts to compare on the same cases (default: both when the run has an inversion encoder)")
    parser.add_argument("--images", type=Path, default=Path("docs/images"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    only = set(args.only or ["roundtrip", "ablations", "real"])

    if args.config is None:
        from clipnerf_ns.app.pretrained import materialize

        args.config = materialize(Path(tempfile.mkdtemp(prefix="bench_invert_"))).stage1
    global ENCODER
    run_config, pipeline = load_run(args.config)
    model = nerf_of(pipeline)
    model.requires_grad_(False)
    ENCODER = run_encoder(args.config, model_fingerprint(model.field), "auto")
    starts = args.starts or (["search", "encoder"] if ENCODER is not None else ["search"])
    config = InversionConfig(steps=args.steps, resolution=args.resolution, seed=args.seed, start=starts[0])
    print(f"torch threads: {torch.get_num_threads()}; {model.num_objects} objects; steps {args.steps} after the search, "
          f"{config.encoder_steps} after the encoder; {args.resolution} px; starts: {', '.join(starts)}")
    report: dict = {}
    cases = draw_cases(args.cases, model.num_objects, args.seed)
    if "roundtrip" in only:
        for start in starts:
            tiles: list = []
            name = "round trip" if start == "search" else "round trip, encoder start"
            report[name.replace(" ", "_").replace(",", "")] = summary = round_trip(
                model, cases, replace(config, start=start), None, args.resolution, name, tiles)
            if start == starts[0]:
                save_grid(tiles, args.images / "inversion_roundtrip.png")
            print_summary(name, summary)
    if "ablations" in only:
        report["ablations"] = {}
        if "roundtrip" in report:
            baseline = summarise(report["roundtrip"]["rows"][: args.ablation_cases])
            print_summary("defaults (alternating, noise, no CLIP), same cases", baseline)
        for name, change in ABLATIONS.items():
            if args.ablations is not None and name not in args.ablations:
                continue
            variant = replace(config, **change)
            clip = load_clip_for(variant, model.box_min.device)
            summary = round_trip(model, cases[: args.ablation_cases], variant, clip, args.resolution, name)
            report["ablations"][name] = summary
            print_summary(name, summary)
    if "real" in only and args.real is not None:
        for start in starts:
            tiles = []
            values = report[f"real_{start}_start"] = real_chairs(model, args.real, replace(config, start=start), None, tiles,
                                                                  args.real_heldout)
            if start == starts[0]:
                save_grid(tiles, args.images / "inversion_real_chairs.png")
            print(f"real chairs, {start} start: input view {np.mean([r['psnr_input_view'] for r in values]):.2f} dB, held-out view "
                  f"{np.mean([r['psnr_novel_view'] for r in values]):.2f} dB (mean of {len(values)}), "
                  f"{np.mean([r['seconds'] for r in values]):.1f} s per inversion")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def print_summary(name: str, s: dict) -> None:
    print(f"== {name}: {s['cases']} cases: PSNR mean {s['psnr_mean']:.2f} dB (median {s['psnr_median']:.2f}, "
          f">= 30 dB: {100 * s['psnr_at_least_30']:.0f}%); pose error mean {s['pose_error_mean']:.1f} deg "
          f"(median {s['pose_error_median']:.2f}, <= 5 deg: {100 * s['pose_error_at_most_5']:.0f}%); view right up to "
          f"symmetry: {100 * s['view_equivalent']:.0f}%; {s['seconds_mean']:.1f} s per inversion", flush=True)


if __name__ == "__main__":
    main()
