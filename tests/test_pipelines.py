"""Our batched calls draw what diffusers' own pipelines draw for the same inputs and seed."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
from tiny_kandinsky import build_compile_decoder
from torch._dynamo.utils import counters

from generation import GenerationParams
from generation.compiled import BACKEND_VARIABLE
from generation.pipelines import KandinskyPipelines

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ours(tiny_models: tuple[Path, Path]) -> KandinskyPipelines:
    prior, decoder = tiny_models
    return KandinskyPipelines.load(str(prior), str(decoder), CPU, torch.float32, prior_steps=3)


@pytest.fixture(scope="module")
def reference(tiny_models: tuple[Path, Path]) -> tuple[KandinskyV22PriorPipeline, KandinskyV22Pipeline]:
    prior, decoder = tiny_models
    return KandinskyV22PriorPipeline.from_pretrained(prior), KandinskyV22Pipeline.from_pretrained(decoder)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def diffusers_image(reference, params: GenerationParams, prior_steps: int = 3) -> np.ndarray:
    """The old service's two calls: one generator seeded once, prior then decoder."""
    prior, decoder = reference
    generator = torch.Generator().manual_seed(params.seed)
    embeds, negative = prior(
        params.prompt,
        negative_prompt=params.negative_prompt,
        guidance_scale=params.prior_guidance_scale,
        num_inference_steps=prior_steps,
        generator=generator,
    ).to_tuple()
    image = decoder(
        image_embeds=embeds,
        negative_image_embeds=negative,
        width=params.width,
        height=params.height,
        num_inference_steps=params.num_inference_steps,
        guidance_scale=params.guidance_scale,
        generator=generator,
    ).images[0]
    return pixels(image)


@pytest.mark.parametrize("negative", [None, "blurry, text"])
@pytest.mark.parametrize("prior_guidance", [1.0, 3.0])
def test_same_image_as_diffusers(ours, reference, negative, prior_guidance) -> None:
    params = GenerationParams("a red fox", 128, 64, 4, 4.0, prior_guidance, seed=11, negative_prompt=negative)
    [drawn] = ours.draw([params])
    assert drawn.image.size == (128, 64)
    assert np.array_equal(pixels(drawn.image), diffusers_image(reference, params))


def test_seed_gives_same_image_inside_a_batch(ours) -> None:
    mine = GenerationParams("a red fox", 64, 64, 4, 4.0, 1.0, seed=5, negative_prompt="blur")
    others = [
        GenerationParams(f"other {i}", 64, 64, 4, 4.0, 1.0, seed=100 + i, negative_prompt=None if i % 2 else "x")
        for i in range(3)
    ]
    [alone] = ours.draw([mine])
    batch = ours.draw([others[0], mine, *others[1:]])
    assert len(batch) == 4
    # Batched matrix products round differently: allow one level of 255.
    assert np.abs(pixels(batch[1].image) - pixels(alone.image)).max() <= 1
    # ...and the other requests really got other pictures.
    assert np.abs(pixels(batch[0].image) - pixels(alone.image)).max() > 10


def test_different_seeds_differ(ours) -> None:
    a, b = (ours.draw([GenerationParams("fox", 64, 64, 3, 4.0, 1.0, seed=s)])[0] for s in (1, 2))
    assert np.abs(pixels(a.image) - pixels(b.image)).max() > 10


def test_zero_image_embedding_computed_once(ours) -> None:
    calls = []
    hook = ours.prior.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        for seed in range(3):
            ours.draw([GenerationParams("fox", 64, 64, 2, 4.0, 1.0, seed=seed)])
    finally:
        hook.remove()
    assert len(calls) <= 1


def test_progress_reported_per_decoder_step(ours) -> None:
    steps: list[tuple[int, int]] = []
    ours.draw([GenerationParams("fox", 64, 64, 5, 4.0, 1.0, seed=1)], on_step=lambda d, t: steps.append((d, t)))
    assert steps == [(i, 5) for i in range(1, 6)]


def test_long_prompt_is_flagged_as_cut(ours) -> None:
    # The offline tokenizer is byte-level: one token per character.
    short = GenerationParams("a fox", 64, 64, 2, 4.0, 1.0, seed=1)
    long = GenerationParams("a fox " * 30, 64, 64, 2, 4.0, 1.0, seed=1)
    drawn = ours.draw([short, long])
    assert [d.prompt_truncated for d in drawn] == [False, True]


def test_batch_must_share_settings(ours) -> None:
    with pytest.raises(ValueError):
        ours.draw(
            [GenerationParams("a", 64, 64, 2, 4.0, 1.0, seed=1), GenerationParams("b", 128, 64, 2, 4.0, 1.0, seed=1)]
        )


def test_warm_up_draws_each_batch_size_once(ours) -> None:
    batches: list[int] = []
    hook = ours.decoder.unet.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["sample"].shape[0]), with_kwargs=True
    )
    try:
        ours.warm_up(64, 64, batch_sizes=(1, 3, 3), steps=1)
    finally:
        hook.remove()
    assert batches == [2, 6]  # guidance doubles each batch: sizes 1 and 3, once each


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_models_load_in_the_dtype_asked_for(tiny_models: tuple[Path, Path], dtype: torch.dtype) -> None:
    """diffusers before 0.40 ignored ``dtype=`` and loaded float32: twice the memory
    (pyproject.toml requires 0.40). Loading half precision on the CPU works; drawing with
    it would not, and is not needed here."""
    prior, decoder = tiny_models
    pipes = KandinskyPipelines.load(str(prior), str(decoder), CPU, dtype)
    modules = {
        name: module
        for pipe in (pipes.prior, pipes.decoder)
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    assert set(modules) == {"prior", "image_encoder", "text_encoder", "unet", "movq"}
    for name, module in modules.items():
        assert {p.dtype for p in module.parameters()} == {dtype}, name
        assert {p.device for p in module.parameters()} == {CPU}, name


@pytest.fixture(scope="module")
def compile_decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallest decoder (tiny_kandinsky.build_compile_decoder): compiling is most of the
    compiled tests' time, and it grows with the layers."""
    path = tmp_path_factory.mktemp("compile") / "decoder"
    build_compile_decoder().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def eager_small(tiny_models: tuple[Path, Path], compile_decoder: Path) -> KandinskyPipelines:
    return KandinskyPipelines.load(str(tiny_models[0]), str(compile_decoder), CPU, torch.float32, prior_steps=3)


@pytest.fixture(scope="module")
def compiled(tiny_models: tuple[Path, Path], compile_decoder: Path) -> KandinskyPipelines:
    """Compiled with Inductor as the bot compiles (its C++ kernels on the CPU), warmed up
    for a single request, the idle bot's case: MAX_BATCH=1 keeps this to two graphs (the
    UNet's static one and the MoVQ decode), each more graph being another minute of C++
    on a busy 2-core machine. COMPILE=cudagraphs compiles on the CPU exactly as on a GPU,
    less the CUDA graphs."""
    pipes = KandinskyPipelines.load(
        str(tiny_models[0]), str(compile_decoder), CPU, torch.float32, prior_steps=3, compile="cudagraphs", max_batch=1
    )
    pipes.warm_up(64, 64, batch_sizes=pipes.serving_batch_sizes(), steps=1)
    return pipes


@pytest.fixture(scope="module")
def compiled_by_batch(tiny_models: tuple[Path, Path], compile_decoder: Path) -> KandinskyPipelines:
    """Compiled for MAX_BATCH=4 and warmed up: static graphs for 1 and 4 requests, a
    dynamic one for the sizes in between. Traced by Dynamo as with Inductor (symbolic
    batch sizes included), run by Dynamo's eager backend (KANDINSKY_COMPILE_BACKEND): the
    same graphs and forms, without Inductor's C++ for each. (aot_eager fails here in
    torch 2.13: a contiguity check in the MoVQ's group norm.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BACKEND_VARIABLE, "eager")  # read when the forms are made, in load
        pipes = KandinskyPipelines.load(
            str(tiny_models[0]),
            str(compile_decoder),
            CPU,
            torch.float32,
            prior_steps=3,
            compile="cudagraphs",
            max_batch=4,
        )
    pipes.warm_up(64, 64, batch_sizes=pipes.serving_batch_sizes(), steps=1)
    return pipes


# The compiled fixture's cold compile (an empty Inductor cache) builds C++ kernels for two
# graphs: about a minute on a busy 2-core machine, seconds with the cache warm.
COLD_COMPILE_TIMEOUT_S = 600


def forms_used(pipes: KandinskyPipelines) -> tuple[list[str], list]:
    """The names of the compiled forms the decoder's UNet steps run on, as they run."""
    forms: list[str] = []
    named = {"single": pipes._unet.static[1], "batched": pipes._unet.batched}
    named |= {"full": pipes._unet.static[pipes.max_batch]} if pipes.max_batch > 1 else {}
    hooks = [form.register_forward_pre_hook(lambda *a, name=name: forms.append(name)) for name, form in named.items()]
    return forms, hooks


@pytest.mark.timeout(COLD_COMPILE_TIMEOUT_S)
def test_compiled_pipelines_draw_the_same(compiled, eager_small) -> None:
    """COMPILE keeps the pictures: Inductor's compiled UNet and MoVQ draw what the eager
    models draw. A single request runs on its static-shape graph, and after the warm-up
    nothing compiles again."""
    assert hasattr(compiled.decoder.unet, "_orig_mod")  # really a torch.compile module
    assert not hasattr(compiled.prior.prior, "_orig_mod")  # CUDA graphs for the prior only on a GPU
    assert compiled.serving_batch_sizes() == (1,)
    graphs = dict(counters["stats"])

    forms, hooks = forms_used(compiled)
    params = GenerationParams("a red fox", 64, 64, 3, 4.0, 1.0, seed=11)
    [expected] = eager_small.draw([params])
    [drawn] = compiled.draw([params])
    assert np.abs(pixels(drawn.image) - pixels(expected.image)).max() <= 2
    assert forms == ["single"] * 3
    assert dict(counters["stats"]) == graphs  # size 1 was ready

    # A picture size that was not warmed up runs eager: compiling it would stall the queue.
    forms.clear()
    other = GenerationParams("a red fox", 128, 64, 3, 4.0, 1.0, seed=11)
    [drawn] = compiled.draw([other])
    assert forms == [] and dict(counters["stats"]) == graphs
    assert np.array_equal(pixels(drawn.image), pixels(eager_small.draw([other])[0].image))
    for hook in hooks:
        hook.remove()


def test_each_batch_size_runs_on_its_compiled_graph(compiled_by_batch, eager_small) -> None:
    """A single request and a full batch run on static-shape graphs, the sizes in between
    on one graph with a dynamic batch dimension: after the warm-up nothing compiles again,
    and a picture is the same in every form."""
    pipes = compiled_by_batch
    assert pipes.serving_batch_sizes() == (1, 2, 4)
    graphs = dict(counters["stats"])
    forms, hooks = forms_used(pipes)
    params = GenerationParams("a red fox", 64, 64, 3, 4.0, 1.0, seed=11)
    [expected] = eager_small.draw([params])
    [drawn] = pipes.draw([params])
    assert forms == ["single"] * 3
    assert np.abs(pixels(drawn.image) - pixels(expected.image)).max() <= 2
    forms.clear()
    batch = pipes.draw([GenerationParams("a red fox", 64, 64, 3, 4.0, 1.0, seed=s) for s in (11, 12, 13)])
    assert forms == ["batched"] * 3
    assert np.abs(pixels(batch[0].image) - pixels(expected.image)).max() <= 2
    forms.clear()
    full = pipes.draw([GenerationParams("a red fox", 64, 64, 3, 4.0, 1.0, seed=s) for s in (11, 1, 2, 3)])
    assert forms == ["full"] * 3
    assert np.abs(pixels(full[0].image) - pixels(expected.image)).max() <= 2
    assert dict(counters["stats"]) == graphs  # sizes 1, 3 and 4 were ready
    for hook in hooks:
        hook.remove()


def test_a_failing_compile_falls_back_to_eager(
    tiny_models: tuple[Path, Path], compile_decoder: Path, eager_small, monkeypatch
) -> None:
    """Inductor needs a C compiler; without one (or on any other compile error) the bot
    still draws, without compiled graphs."""
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    monkeypatch.setattr(torch._inductor.config, "autotune_local_cache", False)
    pipes = KandinskyPipelines.load(
        str(tiny_models[0]), str(compile_decoder), CPU, torch.float32, prior_steps=3, compile="default"
    )
    assert pipes.compiled
    pipes.prepare(96, 64)
    assert not pipes.compiled and not hasattr(pipes.decoder.unet, "_orig_mod")
    params = GenerationParams("a red fox", 96, 64, 3, 4.0, 1.0, seed=4)
    [drawn] = pipes.draw([params])
    assert np.array_equal(pixels(drawn.image), pixels(eager_small.draw([params])[0].image))


def test_compile_auto_compiles_nothing_on_the_cpu(ours) -> None:
    """The default COMPILE=auto means CUDA graphs on a GPU; on the CPU it would only cost time."""
    pipes = KandinskyPipelines(ours.prior, ours.decoder, CPU, compile="auto")
    assert not hasattr(pipes.decoder.unet, "_orig_mod") and pipes.serving_batch_sizes() == (1,)
    # Nor with CPU offload on a GPU: the weights move on every call, CUDA graphs cannot hold them.
    offloaded = KandinskyPipelines(ours.prior, ours.decoder, torch.device("cuda"), compile="auto", cpu_offload=True)
    assert not offloaded.compiled


def test_unknown_compile_mode_is_refused(ours) -> None:
    with pytest.raises(ValueError, match="compile must be one of"):
        KandinskyPipelines(ours.prior, ours.decoder, CPU, compile="fast")


@pytest.mark.timeout(COLD_COMPILE_TIMEOUT_S)
@pytest.mark.parametrize("fixture", ["compiled", "compiled_by_batch"])
def test_release_frees_compiled_models(fixture: str, request: pytest.FixtureRequest) -> None:
    """/reload frees the old models before loading new ones. Compiled, they stayed alive
    through the eager copies beside the compiled forms, those forms, Dynamo's caches and
    the zero-embedding closure. (Uses the shared compiles, so it runs last.)"""
    compiled: KandinskyPipelines = request.getfixturevalue(fixture)
    models = {
        "unet": compiled._eager_unet,
        "movq": compiled.decoder.movq,
        "prior": compiled.prior.prior,
        "image_encoder": compiled.prior.image_encoder,
        "text_encoder": compiled.prior.text_encoder,
        "compiled unet": compiled._unet.batched,
        **{f"compiled unet for {size}": form for size, form in compiled._unet.static.items()},
    }
    refs = {name: weakref.ref(model) for name, model in models.items()}
    del models
    compiled.release()
    gc.collect()
    assert [name for name, ref in refs.items() if ref() is not None] == []
