"""Frozen image features for the learned rewards.

No model hub can be reached, so the suite pre-trains its own small convolutional network on frames it
renders: multi-view time-contrastive learning (TCN): two cameras seeing the same moment are pulled
together, the same camera at a distant moment is pushed away (triplet loss). `robo-rl demos features`
trains it and writes `<name>.safetensors` plus a JSON manifest; `load_feature_net` reads it back, and it
also reads a torchvision ResNet-18/34 state dict from a local file (.safetensors, or .pth loaded with
`weights_only=True`, so nothing is unpickled), built here with torchvision's layer names.

Every network exposes `features(images uint8 (N, H, W, 3)) -> float32 (N, D)`: pooled activations of
several depths, as the perceptual-rewards paper uses intermediate layers rather than the last one.
"""
from __future__ import annotations

import abc
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robo_rl.config import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureError(ConfigError):
    pass


class FeatureNet(nn.Module, abc.ABC):
    """Base: uint8 images in, pooled multi-depth activations out (no gradients at use time)."""

    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    @abc.abstractmethod
    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at the depths whose pooled values form the features."""

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(images)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise FeatureError(f"images must be (N, H, W, 3) uint8, got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def embed(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Differentiable pooled features (used while pre-training)."""
        return torch.cat([s.mean(dim=(2, 3)) for s in self.stages(self.preprocess(images))], dim=1)

    @torch.no_grad()
    def features(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        was_training = self.training
        self.eval()
        out = [self.embed(images[i:i + batch]).numpy() for i in range(0, len(images), batch)]
        self.train(was_training)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        with torch.no_grad():
            return int(self.embed(np.zeros((1, 64, 64, 3), np.uint8)).shape[1])


class SmallConvNet(FeatureNet):
    """Four conv blocks (stride 2); features: pooled activations of blocks 2, 3 and 4."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), nn.GroupNorm(8, chans[i + 1]), nn.ReLU())
            for i in range(4)
        )
        self.width = width

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs[1:]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(FeatureNet):
    """torchvision's ResNet-18/34 layout (same parameter names), for loading its weights from a file."""

    DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

    def __init__(self, depth: int = 18) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths, cin = (64, 128, 256, 512), 64
        for i, (blocks, width) in enumerate(zip(self.DEPTHS[depth], widths)):
            layers = [BasicBlock(cin if b == 0 else width, width, 2 if (b == 0 and i > 0) else 1) for b in range(blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            cin = width

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer2(self.layer1(x))
        x3 = self.layer3(x)
        return [x3, self.layer4(x3)]  # layer3 and layer4 (the methods notes' "avgpool and layer3")


# --- files ------------------------------------------------------------------------------------
def save_feature_net(net: SmallConvNet, path: str | Path, info: dict) -> Path:
    """Weights as safetensors plus a JSON manifest, each written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    manifest = path.with_suffix(".json")
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps({"kind": "small_conv", "width": net.width, **info}, indent=2))
    os.replace(tmp, manifest)
    return path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise FeatureError(f"feature weights '{path}' are not a readable safetensors file ({exc})") from None
    if path.suffix in (".pth", ".pt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FeatureError(f"feature weights '{path}' could not be read as a tensor-only state dict ({exc.__class__.__name__})") from None
        if not isinstance(state, dict):
            raise FeatureError(f"feature weights '{path}' hold a {type(state).__name__}, expected a state dict")
        return state
    raise FeatureError(f"feature weights '{path}': unknown file type '{path.suffix}' (use .safetensors or .pth)")


def load_feature_net(path: str | Path) -> FeatureNet:
    """The suite's own pre-trained net (with its manifest) or a torchvision ResNet-18/34 state dict."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"feature weights '{path}' do not exist (train them with `robo-rl demos features`)")
    state = _read_state(path)
    manifest = path.with_suffix(".json")
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        net: FeatureNet = SmallConvNet(int(info.get("width", 32)))
    elif "conv1.weight" in state and "layer4.0.conv1.weight" in state:
        depth = 34 if "layer3.5.conv1.weight" in state else 18
        if "layer1.0.conv3.weight" in state:
            raise FeatureError(f"feature weights '{path}': bottleneck ResNets (50+) are not supported; use ResNet-18/34")
        net = ResNet(depth)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    else:
        raise FeatureError(f"feature weights '{path}': neither a robo-rl feature net (no {manifest.name}) nor a torchvision ResNet state dict")
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise FeatureError(f"feature weights '{path}': missing {missing[:3]}, unexpected {list(unexpected)[:3]}")
    return net.eval()


# --- self-supervised pre-training -------------------------------------------------------------
def pretrain_tcn(episodes: Sequence[dict[str, np.ndarray]], steps: int = 2000, batch: int = 64, width: int = 32,
                 margin: float = 0.5, positive_window: int = 2, negative_gap: int = 10, seed: int = 0,
                 lr: float = 3e-4, progress: bool = True) -> tuple[SmallConvNet, list[float]]:
    """Multi-view time-contrastive pre-training on rendered episodes ({camera: (T, H, W, 3)}).

    Anchor: camera A at time t. Positive: another camera at (about) t (with one camera, a frame within
    `positive_window`). Negative: camera A at least `negative_gap` steps away. Triplet loss on
    L2-normalised embeddings. Returns the net and the loss curve.
    """
    from robo_rl.logger import ProgressBar

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    episodes = [e for e in episodes if len(next(iter(e.values()))) > negative_gap + 1]
    if not episodes:
        raise FeatureError(f"pre-training needs episodes longer than negative_gap + 1 = {negative_gap + 1} frames")
    net = SmallConvNet(width)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses: list[float] = []
    bar = ProgressBar(steps, enabled=progress, label="features (TCN)")
    for step in range(steps):
        anchors, positives, negatives = _triplets(episodes, batch, positive_window, negative_gap, rng)
        emb = F.normalize(net.embed(np.concatenate([anchors, positives, negatives])), dim=1)
        a, p, n = emb.split(len(anchors))
        loss = F.relu((a - p).pow(2).sum(1) - (a - n).pow(2).sum(1) + margin).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.update(step + 1)
    bar.close()
    return net.eval(), losses


def _triplets(episodes, batch, positive_window, negative_gap, rng):
    anchors, positives, negatives = [], [], []
    for _ in range(batch):
        episode = episodes[rng.integers(len(episodes))]
        cams = list(episode)
        length = len(episode[cams[0]])
        t = int(rng.integers(length))
        cam_a = cams[rng.integers(len(cams))]
        if len(cams) > 1:
            cam_p = cams[(cams.index(cam_a) + 1 + rng.integers(len(cams) - 1)) % len(cams)]
            t_p = t
        else:
            cam_p = cam_a
            t_p = int(np.clip(t + rng.integers(-positive_window, positive_window + 1), 0, length - 1))
        far = [u for u in range(length) if abs(u - t) >= negative_gap]
        t_n = int(far[rng.integers(len(far))]) if far else (0 if t > length // 2 else length - 1)
        anchors.append(episode[cam_a][t])
        positives.append(episode[cam_p][t_p])
        negatives.append(episode[cam_a][t_n])
    return np.stack(anchors), np.stack(positives), np.stack(negatives)
