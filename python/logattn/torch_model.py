"""The paper's generative language model in PyTorch, written from docs/design.md section 2, with
the reference's parameter names: logattn checkpoints load into it and its state_dict saves
as a logattn checkpoint.

    model, config = load_checkpoint("ckpt.safetensors")   # -> (GenerativeLanguageModel, dict)
    save_checkpoint(model, config, "ckpt.safetensors")
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import safetensors_io


def log_attention(Q, K, log_V):
    """Causal log-attention in the reference's formulation: [..., n, dk], [..., n, dv]."""
    H_S = torch.logcumsumexp(K.unsqueeze(-1) + log_V.unsqueeze(-2), dim=-3)
    H_Z = torch.logcumsumexp(K.unsqueeze(-1), dim=-3)
    return (torch.logsumexp(Q.unsqueeze(-1) + H_S, dim=-2)
            - torch.logsumexp(Q.unsqueeze(-1) + H_Z, dim=-2))


def logattn_attention(Q, K, log_V):
    """The same causal log-attention on logattn's operator (torch.ops.logattn.attention):
    float32 kernels, linear in the sequence, with its own backward."""
    from . import torch_ops  # noqa: F401  (registers the operator; needs the extension)
    return torch.ops.logattn.attention(Q.contiguous(), K.contiguous(), log_V.contiguous(),
                                       True, True, None, False)[0]


def softmax_attention(Q, K, log_V):
    """The conventional twin: causal softmax of q . k / sqrt(d_key) over values exp(log v),
    returning the log of the output."""
    n = Q.shape[-2]
    scores = Q @ K.transpose(-1, -2) / Q.shape[-1] ** 0.5
    mask = torch.ones(n, n, dtype=torch.bool).triu(1)
    weights = scores.masked_fill(mask, float("-inf")).softmax(dim=-1)
    return torch.log(weights @ torch.exp(log_V))


class ResidualLayer(nn.Module):
    def __init__(self, d_emb, n_heads, d_key, d_val, attention="log", kernel="reference"):
        super().__init__()
        self.n_heads, self.d_key, self.d_val = n_heads, d_key, d_val
        if kernel not in ("reference", "logattn"):
            raise ValueError(f"unknown attention kernel '{kernel}' (known: reference, logattn)")
        if attention == "softmax":
            if kernel == "logattn":
                raise ValueError("the logattn kernel is log-attention's; the softmax twin runs "
                                 "in PyTorch (kernel='reference')")
            self.attend = softmax_attention
        else:
            self.attend = logattn_attention if kernel == "logattn" else log_attention
        self.feedforward1 = nn.Sequential(nn.LayerNorm(d_emb),
                                          nn.Linear(d_emb, n_heads * (2 * d_key + d_val)))
        self.feedforward2 = nn.Sequential(nn.Linear(n_heads * d_val, 2 * d_emb), nn.GLU(dim=-1),
                                          nn.Linear(d_emb, d_emb, bias=False))

    def forward(self, x):
        p = self.feedforward1(x)                                   # [B, n, H (2dk + dv)]
        p = p.view(*p.shape[:-1], self.n_heads, -1).transpose(-3, -2)  # [B, H, n, 2dk + dv]
        q, k, lv = p.split([self.d_key, self.d_key, self.d_val], dim=-1)
        y = self.attend(q, k, lv).transpose(-3, -2).flatten(-2)  # [B, n, H dv]
        return x + self.feedforward2(y)


class EmbedPosition(nn.Module):
    def __init__(self, d_emb):
        super().__init__()
        self.d_emb = d_emb
        self.dense = nn.Linear(d_emb, 2 * d_emb)

    def forward(self, x):
        u, l = self.dense(x).split(self.d_emb, dim=-1)
        log_a = F.logsigmoid(u)
        # h_t = logaddexp(log a_t + h_{t-1}, l_t) with h_{-1} = 0, in closed form:
        # h_t = A_t + LSE_{i <= t}(l_i - A_i), A_t = sum_{j <= t} log a_j, term i = -1 being h_{-1}.
        A = torch.cumsum(log_a, dim=-2)
        terms = torch.cat([torch.zeros_like(l[..., :1, :]), l - A], dim=-2)
        h = A + torch.logcumsumexp(terms, dim=-2)[..., 1:, :]
        return x + h


class GenerativeLanguageModel(nn.Module):
    def __init__(self, vocab, d_emb, n_layers, n_heads, d_key, d_val, attention="log",
                 kernel="reference", **_):
        """kernel: the attention's implementation, "reference" (the paper's formulation in
        PyTorch, quadratic memory in d_key x d_val per token) or "logattn" (logattn's
        operator)."""
        super().__init__()
        self.embed = nn.Embedding(vocab, d_emb)
        nn.init.uniform_(self.embed.weight, -1 / math.sqrt(d_emb), 1 / math.sqrt(d_emb))
        self.embed_pos = EmbedPosition(d_emb)
        self.layers = nn.Sequential(*[ResidualLayer(d_emb, n_heads, d_key, d_val, attention, kernel)
                                      for _ in range(n_layers)])
        self.lnorm = nn.LayerNorm(d_emb)

    def forward(self, token_ids):
        x = self.embed_pos(self.embed(token_ids))
        x = self.lnorm(self.layers(x))
        return x @ self.embed.weight.T

    def param_groups(self, weight_decay):
        """The reference's AdamW groups: decay on Linear and Embedding weights only."""
        decay = {id(m.weight) for m in self.modules() if isinstance(m, (nn.Linear, nn.Embedding))}
        return [{"params": [p for p in self.parameters() if id(p) in decay],
                 "weight_decay": weight_decay},
                {"params": [p for p in self.parameters() if id(p) not in decay],
                 "weight_decay": 0.0}]


def load_checkpoint(path, dtype=torch.float32, kernel="reference"):
    tensors, meta = safetensors_io.load(path)
    config = json.loads(meta["config"])
    model = GenerativeLanguageModel(**config, kernel=kernel).to(dtype)
    model.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in tensors.items()})
    return model, config


def save_checkpoint(model, config, path, tokenizer="bytes"):
    safetensors_io.save(path, {k: v.detach().float().numpy() for k, v in model.state_dict().items()},
                        {"format": "logattn-checkpoint", "format_version": "1",
                         "config": json.dumps(config), "tokenizer": tokenizer})
