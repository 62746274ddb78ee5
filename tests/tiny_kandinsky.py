"""Tiny random-weight Kandinsky 2.2 pipelines saved in the hub layout.

Built from the real diffusers/transformers classes (the recipe of diffusers' own tests,
made offline: a byte-level CLIP tokenizer instead of a hub download), so the project's
real ``from_pretrained`` loading path reads them exactly as it reads the hub repos.
"""

from __future__ import annotations

import json
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

HIDDEN = 32
# The schedulers of the hub repos: the prior's and the decoder's.
UNCLIP_CONFIG = dict(
    variance_type="fixed_small_log",
    prediction_type="sample",
    num_train_timesteps=1000,
    clip_sample=True,
    clip_sample_range=10.0,
)
DDPM_CONFIG = dict(
    beta_schedule="linear",
    beta_start=0.00085,
    beta_end=0.012,
    clip_sample=False,
    num_train_timesteps=1000,
    prediction_type="epsilon",
    steps_offset=1,
    thresholding=False,
)


def _tokenizer(workdir: Path) -> CLIPTokenizer:
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (workdir / "merges.txt").write_text("#version: 0.2\n")
    # transformers 5 takes the files as ``vocab``/``merges``; without model_max_length
    # tokenization fails.
    return CLIPTokenizer(vocab=str(workdir / "vocab.json"), merges=str(workdir / "merges.txt"), model_max_length=77)


def build_prior(workdir: Path) -> KandinskyV22PriorPipeline:
    torch.manual_seed(0)
    tokenizer = _tokenizer(workdir / "_tokenizer")
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=HIDDEN,
            projection_dim=HIDDEN,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            pad_token_id=1,
            vocab_size=len(tokenizer),
        )
    )
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=HIDDEN,
            image_size=32,
            projection_dim=HIDDEN,
            intermediate_size=37,
            num_attention_heads=4,
            num_channels=3,
            num_hidden_layers=2,
            patch_size=8,
        )
    )
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=HIDDEN, num_layers=1)
    # clip_std initialises to zeros, which would zero every embedding.
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    scheduler = UnCLIPScheduler(**UNCLIP_CONFIG)
    image_processor = CLIPImageProcessor(
        crop_size=32,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
        size=32,
    )
    return KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        image_processor=image_processor,
    )


def build_decoder() -> KandinskyV22Pipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=HIDDEN,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=HIDDEN,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    # Four 32-channel blocks give the real 8x image/latent ratio (SpatialNorm needs
    # multiples of 32).
    movq = VQModel(
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
    scheduler = DDPMScheduler(**DDPM_CONFIG)
    return KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)


def build_compile_decoder() -> KandinskyV22Pipeline:
    """The smallest decoder of the same classes, for the tests that compile it: torch.compile
    on the CPU builds a C++ kernel per fused operation (seconds each), so fewer layers
    compile much faster. One UNet level with cross-attention and no middle block, and a
    two-level MoVQ (2x image/latent ratio)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,
        addition_embed_type="image",
        down_block_types=("SimpleCrossAttnDownBlock2D",),
        up_block_types=("SimpleCrossAttnUpBlock2D",),
        mid_block_type=None,
        block_out_channels=(32,),
        layers_per_block=1,
        encoder_hid_dim=HIDDEN,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=HIDDEN,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    movq = VQModel(
        block_out_channels=[32, 32],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    return KandinskyV22Pipeline(unet=unet, scheduler=DDPMScheduler(**DDPM_CONFIG), movq=movq)


def save_tiny_models(root: Path) -> tuple[Path, Path]:
    """Write tiny prior and decoder repos under ``root``; return their directories."""
    prior_dir, decoder_dir = root / "kandinsky-2-2-prior", root / "kandinsky-2-2-decoder"
    build_prior(root).save_pretrained(prior_dir)
    build_decoder().save_pretrained(decoder_dir)
    return prior_dir, decoder_dir
