"""A transformer text classifier behind a scikit-learn-style interface, trained with a plain PyTorch loop.

``TransformerClassifier(...).fit(texts, labels)`` returns the fitted estimator; ``classes_`` gives the column
order of ``predict_proba``. The loop uses dynamic padding (each batch padded to its own longest text) and
length-grouped batches (texts of similar length batched together, the order of batches shuffled), which wastes
far less compute on padding than fixed-length batches. A GPU is used when present, with bf16 (or fp16 with loss
scaling) autocast; the CPU otherwise. Randomness comes from ``seed`` alone, so the same data, settings and seed
give the same model on the same CPU.

``torch`` and ``transformers`` are imported lazily: importing them costs seconds.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import BackendError, SynthloopError
from core.models import embedded_minilm_path
from core.training import distributed
from core.training.config import EMBEDDED_MODEL

CLASSES_FILE = "synthloop_classes.json"
ALLOW_DOWNLOADS_ENV = "SYNTHLOOP_ALLOW_DOWNLOADS"
# Length-grouped batching sorts texts by length inside windows of this many batches (as transformers'
# LengthGroupedSampler does), so batches are homogeneous in length yet the data order stays random.
MEGABATCH_FACTOR = 50


@dataclass(frozen=True)
class StepInfo:
    """Progress after one optimisation step (passed to the ``on_step`` callback)."""

    step: int
    total_steps: int
    epoch: int
    epochs: int
    loss: float
    elapsed: float

    @property
    def eta_seconds(self) -> float:
        return self.elapsed / self.step * (self.total_steps - self.step) if self.step else float("nan")


class TextClassifier(Protocol):
    """What a run needs from a classifier (a pluggable backend)."""

    classes_: list[str]

    def fit(self, texts: Sequence[str], labels: Sequence[str], *,
            soft_targets: np.ndarray | None = None) -> TextClassifier: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def predict(self, texts: Sequence[str]) -> list[str]: ...


def import_torch() -> Any:
    """``import torch``, with OpenMP threads that sleep rather than spin while they wait.

    On a shared CPU (several jobs, or other users, at once) spinning threads burn the cores the working threads
    need: measured here, a training step took 3× the CPU time with spinning threads. Passive waiting costs
    nothing noticeable on an idle machine. The setting only counts before torch is first imported, and an
    explicit ``OMP_WAIT_POLICY`` in the environment wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    return torch

def resolve_model(name: str) -> tuple[str, bool]:
    """``(path or hub id, local_files_only)`` for a model name: ``embedded``, a local folder, or a hub id.

    Nothing is downloaded unless ``SYNTHLOOP_ALLOW_DOWNLOADS=1``: there is no network on the target machines,
    so a hub id must already be in the local Hugging Face cache.
    """
    if name == EMBEDDED_MODEL:
        return str(embedded_minilm_path()), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SynthloopError(f"model folder {name!r} has no config.json: pass a folder saved with"
                                 " save_pretrained() (config, weights and tokenizer)")
        return str(path), True
    if name.startswith(("/", "./", "../", "~")) or path.suffix in {".bin", ".safetensors", ".pt"}:
        raise SynthloopError(f"no model folder at {name!r}: check the path, or use {EMBEDDED_MODEL!r}")
    return name, os.environ.get(ALLOW_DOWNLOADS_ENV, "") != "1"


def _hub_error(name: str, exc: Exception) -> BackendError:
    return BackendError(
        f"cannot load model {name!r}: it is not a local model folder, not in the local Hugging Face cache, and the"
        f" model hub is unreachable from here (downloads are off). Pass a local path to a model folder (saved with"
        f" save_pretrained), or use {EMBEDDED_MODEL!r}. ({type(exc).__name__})"
    )


def load_tokenizer_and_model(name: str, *, num_labels: int | None = None,
                             id2label: dict[int, str] | None = None) -> tuple[Any, Any]:
    """Tokenizer and sequence-classification model for ``name`` (see :func:`resolve_model`), offline."""
    import_torch()  # before transformers imports torch, so the thread policy applies
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source, local_only = resolve_model(name)
    # "Some weights were newly initialised" is expected when a classification head is added: not news.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"local_files_only": local_only}
    if num_labels is not None:
        kwargs.update(num_labels=num_labels, id2label=id2label,
                      label2id={label: i for i, label in (id2label or {}).items()}, ignore_mismatched_sizes=True)
    is_hub_id = source == name and not Path(name).exists()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except OSError as exc:
        if is_hub_id:
            raise _hub_error(name, exc) from None
        raise BackendError(f"cannot load model {name!r} from {source}: {exc}") from None
    except ValueError as exc:
        if is_hub_id and type(exc).__name__ == "HFValidationError":  # not even a well-formed hub id
            raise _hub_error(name, exc) from None
        raise BackendError(f"model {name!r} cannot be used for text classification: {exc}") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Decoder-only checkpoints (GPT-2 style) have no pad token; batching needs one.
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def seed_everything(seed: int) -> None:
    torch = import_torch()

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Indices in batches of similar length: shuffle, sort by length inside windows of ``MEGABATCH_FACTOR``
    batches, cut into batches, then shuffle the batch order (so long batches do not all come first)."""
    order = rng.permutation(len(lengths))
    window = batch_size * MEGABATCH_FACTOR
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window].tolist(), key=lambda i: -lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def soft_cross_entropy(logits: Any, targets: Any) -> Any:
    """Mean over the batch of ``−Σ_c p_c · log softmax(logits)_c``, ``p`` the target distribution of each row
    (a one-hot ``p`` gives the usual cross-entropy); computed in float32 under mixed precision."""
    torch = import_torch()

    return torch.nn.functional.cross_entropy(logits.float(), targets.float())


def _checked_soft_targets(soft_targets: np.ndarray | None, n_texts: int, n_classes: int) -> np.ndarray | None:
    if soft_targets is None:
        return None
    soft = np.asarray(soft_targets, dtype=np.float32)
    if soft.shape != (n_texts, n_classes):
        raise ValueError(f"soft targets have shape {soft.shape}, expected ({n_texts}, {n_classes})")
    return soft


def pick_device(requested: str | None = None) -> str:
    torch = import_torch()

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformerClassifier:
    """Fine-tunes a Hugging Face encoder with a classification head.

    ``on_step(StepInfo) -> bool | None`` is called after every step; returning True stops training early
    (``stopped_`` is then True). ``on_epoch(epoch, self) -> dict | None`` is called after every epoch; what it
    returns is kept in ``history_["epochs"]`` (dev metrics). ``labels`` fixes ``classes_`` (else the sorted
    training labels).
    """

    def __init__(
        self,
        model: str = EMBEDDED_MODEL,
        *,
        epochs: int = 3,
        learning_rate: float = 1e-4,
        batch_size: int = 32,
        max_length: int = 128,
        warmup_ratio: float = 0.1,
        weight_decay: float = 0.01,
        seed: int = 42,
        labels: Sequence[str] | None = None,
        device: str | None = None,
        on_step: Callable[[StepInfo], bool | None] | None = None,
        on_epoch: Callable[[int, TransformerClassifier], dict[str, Any] | None] | None = None,
    ) -> None:
        self.model = model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.warmup_ratio = warmup_ratio
        self.weight_decay = weight_decay
        self.seed = seed
        self.labels = list(labels) if labels is not None else None
        self.device = device
        self.on_step = on_step
        self.on_epoch = on_epoch

    # -- training -------------------------------------------------------------------------------------------

    def fit(self, texts: Sequence[str], labels: Sequence[str], *,
            soft_targets: np.ndarray | None = None) -> TransformerClassifier:
        """Train on ``texts``; the loss is cross-entropy against ``labels``, or, with ``soft_targets`` (one row per
        text, a distribution over ``classes_`` in that order), cross-entropy against those distributions."""
        torch = import_torch()

        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if not texts:
            raise SynthloopError("no training texts: choose training data first")
        self.classes_ = classes = self._check_classes(labels)
        self.device_ = pick_device(self.device or distributed.device())
        seed_everything(self.seed)
        self.tokenizer_, self.model_ = load_tokenizer_and_model(
            self.model, num_labels=len(self._output_names()), id2label=dict(enumerate(self._output_names()))
        )
        model = self.model_.to(self.device_)
        trained = self._data_parallel(model)
        targets = self._targets(labels)
        soft = _checked_soft_targets(soft_targets, len(texts), len(classes))
        encoded = self._encode(texts)
        lengths = [len(ids) for ids in encoded["input_ids"]]

        # Under torchrun each rank takes batch_size / world_size items per step, so a step still sees
        # batch_size items and the number of steps (and the learning-rate schedule) match one process.
        rank_batch_size = math.ceil(self.batch_size / distributed.world_size())
        steps_per_epoch = math.ceil(len(distributed.shard(len(texts), seed=self.seed, epoch=0)) / rank_batch_size)
        total_steps = steps_per_epoch * self.epochs
        optimizer = torch.optim.AdamW(self._parameter_groups(model), lr=self.learning_rate)
        warmup = int(total_steps * self.warmup_ratio)

        def schedule(step: int) -> float:  # linear warm-up, then linear decay to 0 (transformers' default)
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        autocast_dtype, scaler = self._mixed_precision()
        rng = np.random.default_rng(self.seed)
        self.history_: dict[str, Any] = {"steps": [], "epochs": [], "device": self.device_,
                                         "precision": str(autocast_dtype).replace("torch.", "") if autocast_dtype
                                         else "float32", "total_steps": total_steps}
        self.stopped_ = False
        started, cpu_started = time.perf_counter(), time.process_time()
        step = 0
        for epoch in range(1, self.epochs + 1):
            model.train()
            epoch_losses = []
            shard = distributed.shard(len(texts), seed=self.seed, epoch=epoch)
            for local_batch in length_grouped_batches([lengths[i] for i in shard], rank_batch_size, rng):
                batch_indices = shard[local_batch].tolist()
                batch = self._collate(encoded, batch_indices)
                if soft is None:
                    batch["labels"] = torch.as_tensor(targets[batch_indices], device=self.device_)
                with torch.autocast(device_type="cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    if soft is None:
                        loss = self._loss(trained, batch)
                    else:  # the soft objective: cross-entropy against each item's label distribution
                        loss = soft_cross_entropy(trained(**batch).logits,
                                                  torch.as_tensor(soft[batch_indices], device=self.device_))
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                scheduler.step()
                step += 1
                loss_value = distributed.mean(float(loss.detach()))
                epoch_losses.append(loss_value)
                self.history_["steps"].append({"step": step, "epoch": epoch, "loss": loss_value})
                info = StepInfo(step, total_steps, epoch, self.epochs, loss_value, time.perf_counter() - started)
                # Every rank stops together when one is told to (only rank 0 can be: it holds the job).
                if distributed.any_rank(self.on_step is not None and bool(self.on_step(info))):
                    self.stopped_ = True
                    break
            epoch_entry: dict[str, Any] = {"epoch": epoch, "train_loss": float(np.mean(epoch_losses))
                                           if epoch_losses else None}
            if self.on_epoch is not None and not self.stopped_:
                epoch_entry.update(self.on_epoch(epoch, self) or {})
            self.history_["epochs"].append(epoch_entry)
            if self.stopped_:
                break
        self.history_["train_seconds"] = time.perf_counter() - started
        self.history_["train_cpu_seconds"] = time.process_time() - cpu_started
        model.eval()
        return self

    # -- what a subclass with other outputs (core.training.annotator_heads) overrides ---------------------------

    def _check_classes(self, labels: Sequence[str]) -> list[str]:
        """``classes_`` for these training labels (``labels`` given at construction, else the sorted labels)."""
        classes = self.labels if self.labels is not None else sorted({str(y) for y in labels})
        unknown = sorted({str(y) for y in labels} - set(classes))
        if unknown:
            raise SynthloopError(f"training label {unknown[0]!r} is not one of the classes {classes}")
        return list(classes)

    def _targets(self, labels: Sequence[str]) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.classes_)}
        return np.array([index[str(y)] for y in labels], dtype=np.int64)

    def _output_names(self) -> list[str]:
        """One name per output of the model (its ``id2label``): the classes."""
        return self.classes_

    def _loss(self, model: Any, batch: dict[str, Any]) -> Any:
        """The hard-label loss of a batch whose ``labels`` hold the targets of its rows."""
        return model(**batch).loss

    def _probabilities(self, logits: Any) -> Any:
        torch = import_torch()

        return torch.softmax(logits.float(), dim=-1)

    def _data_parallel(self, model: Any) -> Any:
        """``model`` wrapped in DistributedDataParallel (gradients all-reduced) under torchrun, else itself."""
        if not distributed.active():
            return model
        torch = import_torch()
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.device(self.device_)] if self.device_.startswith("cuda") else None  # CPU: none
        return DistributedDataParallel(model, device_ids=device_ids)

    def _parameter_groups(self, model: Any) -> list[dict[str, Any]]:
        # No weight decay on biases and LayerNorm weights, as in the BERT recipe.
        decay, no_decay = [], []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
        return [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _mixed_precision(self) -> tuple[Any, Any]:
        torch = import_torch()

        if not self.device_.startswith("cuda"):
            return None, None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float16, torch.amp.GradScaler("cuda")

    # -- encoding -------------------------------------------------------------------------------------------

    def _encode(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Tokenise once, truncated but unpadded: padding happens per batch."""
        return self.tokenizer_([str(t) for t in texts], truncation=True, max_length=self.max_length,
                               padding=False)

    def _collate(self, encoded: dict[str, list[list[int]]], indices: Sequence[int]) -> dict[str, Any]:
        torch = import_torch()

        longest = max(len(encoded["input_ids"][i]) for i in indices)
        pad_id = self.tokenizer_.pad_token_id or 0
        batch: dict[str, Any] = {}
        for key, pad_value in (("input_ids", pad_id), ("token_type_ids", 0), ("attention_mask", 0)):
            if key not in encoded:
                continue
            rows = [encoded[key][i] + [pad_value] * (longest - len(encoded[key][i])) for i in indices]
            batch[key] = torch.tensor(rows, dtype=torch.long, device=self.device_)
        return batch

    # -- inference ------------------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise SynthloopError("this classifier is not trained yet: call fit() or load() first")

    def predict_proba(self, texts: Sequence[str], *, batch_size: int | None = None,
                      on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Class probabilities, shape ``(len(texts), len(classes_))``, columns in ``classes_`` order.

        ``on_batch(done, total)`` is called after every batch (a long evaluation keeps its job's heartbeat)."""
        torch = import_torch()

        self._check_fitted()
        if not texts:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        batch_size = batch_size or max(self.batch_size, 64)
        encoded = self._encode(texts)
        # Sorting by length makes each inference batch nearly padding-free; the order is restored at the end.
        order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
        out = np.zeros((len(texts), len(self._output_names())), dtype=np.float32)
        autocast_dtype = self._mixed_precision()[0]
        self.model_.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                indices = order[start:start + batch_size]
                with torch.autocast(device_type="cuda", dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    logits = self.model_(**self._collate(encoded, indices)).logits
                out[indices] = self._probabilities(logits).cpu().numpy()
                if on_batch is not None:
                    on_batch(min(start + batch_size, len(order)), len(order))
        return out

    def predict(self, texts: Sequence[str]) -> list[str]:
        probabilities = self.predict_proba(texts)
        return [self.classes_[i] for i in probabilities.argmax(axis=1)]

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Save model, tokenizer and class order so :meth:`load` (or plain transformers) can use them."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(folder)
        self.tokenizer_.save_pretrained(folder)
        (folder / CLASSES_FILE).write_text(json.dumps({"classes": self.classes_, "max_length": self.max_length}))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, device: str | None = None) -> TransformerClassifier:
        folder = Path(folder)
        meta_file = folder / CLASSES_FILE
        if not meta_file.is_file():
            raise SynthloopError(f"{folder} is not a saved Synthloop classifier (no {CLASSES_FILE})")
        meta = json.loads(meta_file.read_text())
        clf = cls(str(folder), max_length=meta["max_length"], labels=meta["classes"], device=device)
        clf.classes_ = list(meta["classes"])
        clf.device_ = pick_device(device)
        clf.tokenizer_, clf.model_ = load_tokenizer_and_model(str(folder))
        clf.model_.to(clf.device_).eval()
        return clf
