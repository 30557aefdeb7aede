"""PyTorch interface of logattn's attention (CPU; float32 inside), on the operators that
logattn/torch_ops.py registers as torch.ops.logattn.*.

    y = attention(Q, K, V, causal=True, log_values=False)
    y, state = attention(Q, K, V, ..., initial_state=state, output_final_state=True)

Q, K: [B, H, n, d_key], V: [B, H, n, d_val] (log-values when log_values) -> y; the state
[B, H, 2 d_key + d_val + d_key d_val] carries the keys seen so far into the next call (as
flash-linear-attention's initial_state / output_final_state do); no gradient flows through
it.

LogAttention follows the reference implementation's calling convention:
    attn = LogAttention(is_causal=True)
    log_y = attn(Q, K, log_V, using_prev_context=False)
with Q, K: [..., n, d_key], log_V: [..., n, d_val] -> log_y: [..., n, d_val]. With
using_prev_context=True the call continues from the state the previous call left.
"""
import torch

from . import torch_ops  # noqa: F401  (registers torch.ops.logattn)


def attention(Q, K, V, causal=True, log_values=False, initial_state=None,
              output_final_state=False):
    """Differentiable in Q, K and V; returns y, or (y, final state) with output_final_state."""
    y, _, final = torch.ops.logattn.attention(Q, K, V, causal, log_values, initial_state,
                                              output_final_state)
    return (y, final) if output_final_state else y


class LogAttention(torch.nn.Module):
    """Drop-in for the reference's LogAttention (log-values in, log outputs out)."""

    def __init__(self, is_causal=True):
        super().__init__()
        self.is_causal = is_causal
        self.state = None

    def forward(self, Q, K, log_V, using_prev_context=False):
        lead = Q.shape[:-2]
        heads = 1
        for s in lead:
            heads *= s
        shape4 = lambda x: x.reshape(1, heads, x.shape[-2], x.shape[-1])
        q, k, lv = shape4(Q), shape4(K), shape4(log_V)
        want = (1, heads, torch_ops.state_size(q.shape[-1], lv.shape[-1]))
        fits = self.state is not None and tuple(self.state.shape) == want
        y, self.state = attention(q, k, lv, causal=self.is_causal, log_values=True,
                                  initial_state=self.state if using_prev_context and fits else None,
                                  output_final_state=True)
        return y.reshape(*lead, y.shape[-2], y.shape[-1])
