"""Flax NNX models for multimodal contrastive learning: encoders, latent converters, the CoMM
fusion block, projection heads and a config-driven builder."""

from jaxmm.models.alexnet import AlexNet
from jaxmm.models.causal_conv import CausalConvEncoder
from jaxmm.models.config import (
    FUSION_KINDS,
    FusionConfig,
    HeadConfig,
    ModalityConfig,
    ModelConfig,
)
from jaxmm.models.converters import FeatureTokenizer, IdentityConverter, OneToken, PatchEmbedding
from jaxmm.models.fusion import (
    FusionTransformer,
    LinearFusion,
    broadcast_modality_mask,
    masked_mean_tokens,
    modality_key_mask,
)
from jaxmm.models.gru import GRUEncoder
from jaxmm.models.heads import ProjectionHead
from jaxmm.models.mlp import MLPEncoder
from jaxmm.models.model import (
    CONVERTERS,
    ENCODERS,
    MultimodalModel,
    build_model,
    register_converter,
    register_encoder,
)
from jaxmm.models.outputs import EncoderOutput, Tokens
from jaxmm.models.posemb import sincos_1d, sincos_2d
from jaxmm.models.resnet import ResNet18
from jaxmm.models.transformer import TransformerEncoder

__all__ = [
    "AlexNet",
    "CausalConvEncoder",
    "CONVERTERS",
    "ENCODERS",
    "EncoderOutput",
    "FeatureTokenizer",
    "FUSION_KINDS",
    "FusionConfig",
    "FusionTransformer",
    "GRUEncoder",
    "HeadConfig",
    "IdentityConverter",
    "LinearFusion",
    "MLPEncoder",
    "ModalityConfig",
    "ModelConfig",
    "MultimodalModel",
    "OneToken",
    "PatchEmbedding",
    "ProjectionHead",
    "ResNet18",
    "Tokens",
    "TransformerEncoder",
    "broadcast_modality_mask",
    "build_model",
    "masked_mean_tokens",
    "modality_key_mask",
    "register_converter",
    "register_encoder",
    "sincos_1d",
    "sincos_2d",
]
