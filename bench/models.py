"""Kandinsky 2.2 pipelines with random weights, built in memory for benchmarks.

``full`` gives the real architectures and sizes (configs from
/work/shared/kandinsky22/README.md): speed and memory do not depend on weight values,
so timings are real and the pictures are noise. ``tiny`` gives a few-MB version of
the same classes, to check the benchmark's own code on a CPU in seconds.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from diffusers import (
    DDPMScheduler,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
    PriorTransformer,
    UnCLIPScheduler,
    UNet2DConditionModel,
    VQModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

# --- full-size configs (published sizes: prior 1.0B, image encoder 1.8B, text encoder
# 695M, UNet 1.22B + 31M image projection, MoVQ 67M; about 9.2 GiB in fp16) -----------
UNET = dict(
    in_channels=4,
    out_channels=8,
    block_out_channels=[384, 768, 1152, 1536],
    layers_per_block=3,
    attention_head_dim=64,
    cross_attention_dim=768,
    addition_embed_type="image",
    addition_embed_type_num_heads=64,
    encoder_hid_dim=1280,
    encoder_hid_dim_type="image_proj",
    resnet_time_scale_shift="scale_shift",
    down_block_types=["ResnetDownsampleBlock2D"] + ["SimpleCrossAttnDownBlock2D"] * 3,
    up_block_types=["SimpleCrossAttnUpBlock2D"] * 3 + ["ResnetUpsampleBlock2D"],
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
    sample_size=64,
    class_embed_type=None,
)
MOVQ = dict(
    act_fn="silu",
    block_out_channels=[128, 256, 256, 512],
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
    layers_per_block=2,
    norm_num_groups=32,
    norm_type="spatial",
    num_vq_embeddings=16384,
    sample_size=32,
    scaling_factor=0.18215,
    vq_embed_dim=4,
)
PRIOR = dict(
    num_attention_heads=32,
    attention_head_dim=64,
    num_layers=20,
    embedding_dim=1280,
    num_embeddings=77,
    additional_embeddings=4,
    dropout=0.0,
)
TEXT = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    projection_dim=1280,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)
VISION = dict(
    hidden_size=1664,
    intermediate_size=8192,
    projection_dim=1280,
    num_hidden_layers=48,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)
DDPM = dict(
    num_train_timesteps=1000,
    beta_schedule="linear",
    beta_start=0.00085,
    beta_end=0.012,
    clip_sample=False,
    steps_offset=1,
    prediction_type="epsilon",
)
UNCLIP = dict(
    variance_type="fixed_small_log",
    prediction_type="sample",
    num_train_timesteps=1000,
    clip_sample=True,
    clip_sample_range=10.0,
)

# --- tiny configs (the recipe of diffusers' own tests) --------------------------------
H = 32
TINY_UNET = dict(
    in_channels=4,
    out_channels=8,
    addition_embed_type="image",
    down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
    up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    block_out_channels=(32, 64),
    layers_per_block=1,
    encoder_hid_dim=H,
    encoder_hid_dim_type="image_proj",
    cross_attention_dim=H,
    attention_head_dim=4,
    resnet_time_scale_shift="scale_shift",
    class_embed_type=None,
)
TINY_MOVQ = dict(
    block_out_channels=[32, 32, 32, 32],
    down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
    in_channels=3,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
    norm_type="spatial",
    num_vq_embeddings=12,
    out_channels=3,
    up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
    vq_embed_dim=4,
)
TINY_PRIOR = dict(num_attention_heads=2, attention_head_dim=12, embedding_dim=H, num_layers=1)
TINY_TEXT = dict(
    vocab_size=49408,
    hidden_size=H,
    projection_dim=H,
    intermediate_size=37,
    num_attention_heads=4,
    num_hidden_layers=2,
    max_position_embeddings=77,
)
TINY_VISION = dict(
    hidden_size=H,
    image_size=32,
    projection_dim=H,
    intermediate_size=37,
    num_attention_heads=4,
    num_hidden_layers=2,
    patch_size=8,
)


def byte_tokenizer() -> CLIPTokenizer:
    """Offline byte-level CLIP tokenizer: 256 byte characters, the same with ``</w>``,
    then <|startoftext|> (512) and <|endoftext|> (513). Every id is < 49408, the text
    encoder's vocabulary, so the full-size embedding table is used as is."""
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    workdir = Path(tempfile.mkdtemp(prefix="k22tok-"))
    (workdir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (workdir / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab=str(workdir / "vocab.json"), merges=str(workdir / "merges.txt"), model_max_length=77)


@torch.no_grad()
def _shrink(*models: torch.nn.Module) -> None:
    # Random matrices at full scale overflow fp16 deep in the 48-layer encoders and the
    # UNet; halving every matrix keeps activations finite.
    for model in models:
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(0.5)


def build_pipelines(
    device: torch.device, dtype: torch.dtype, *, tiny: bool = False, seed: int = 0
) -> tuple[KandinskyV22PriorPipeline, KandinskyV22Pipeline]:
    """Both pipelines with random weights, initialised directly on ``device``."""
    torch.manual_seed(seed)
    tokenizer = byte_tokenizer()
    ids = dict(bos_token_id=512, eos_token_id=513, pad_token_id=513)
    with torch.device(device):
        text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(**(TINY_TEXT if tiny else TEXT), **ids))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**(TINY_VISION if tiny else VISION)))
        prior = PriorTransformer(**(TINY_PRIOR if tiny else PRIOR))
        # clip_std initialises to zeros, which would zero every image embedding.
        prior.clip_std = torch.nn.Parameter(torch.ones_like(prior.clip_std))
        unet = UNet2DConditionModel(**(TINY_UNET if tiny else UNET))
        movq = VQModel(**(TINY_MOVQ if tiny else MOVQ))
    models = (text_encoder, image_encoder, prior, unet, movq)
    _shrink(*models)
    for m in models:
        m.to(dtype=dtype).eval()
    size = 32 if tiny else 224
    image_processor = CLIPImageProcessor(
        crop_size=size,
        size=size,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
    )
    prior_pipe = KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=UnCLIPScheduler(**UNCLIP),
        image_processor=image_processor,
    )
    decoder_pipe = KandinskyV22Pipeline(unet=unet, scheduler=DDPMScheduler(**DDPM), movq=movq)
    for pipe in (prior_pipe, decoder_pipe):
        pipe.set_progress_bar_config(disable=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return prior_pipe, decoder_pipe


def count_params(*models: torch.nn.Module) -> int:
    return sum(p.numel() for m in models for p in m.parameters())
