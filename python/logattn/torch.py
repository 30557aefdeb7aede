"""PyTorch autograd wrapper of logattn's attention (CPU, float32 inside).

LogAttention follows the reference implementation's calling convention:
    attn = LogAttention(is_causal=True)
    log_y = attn(Q, K, log_V, using_prev_context=False)
with Q, K: [..., n, d_key], log_V: [..., n, d_val] -> log_y: [..., n, d_val]. With
using_prev_context=True the call continues from the state the previous call left (the
constant-size state; no gradient flows into it).
"""
import torch

from . import _logattn


class LogAttentionFunction(torch.autograd.Function):
    """(Q, K, V) [B, H, n, d] -> Y; V are log-values (returns log Y) when log_values."""

    @staticmethod
    def forward(ctx, Q, K, V, causal, log_values, state):
        arrays = [x.detach().to(torch.float32).contiguous().numpy() for x in (Q, K, V)]
        state_in = state.copy() if state is not None else None
        y, log_d = _logattn.forward(*arrays, causal=causal, log_values=log_values, state=state)
        ctx.arrays, ctx.y, ctx.log_d = arrays, y, log_d
        ctx.causal, ctx.log_values, ctx.state_in = causal, log_values, state_in
        ctx.dtypes = (Q.dtype, K.dtype, V.dtype)
        return torch.from_numpy(y).to(Q.dtype)

    @staticmethod
    def backward(ctx, gy):
        g = gy.detach().to(torch.float32).contiguous().numpy()
        gq, gk, gv = _logattn.backward(*ctx.arrays, ctx.y, ctx.log_d, g, causal=ctx.causal,
                                       log_values=ctx.log_values, state_in=ctx.state_in)
        out = [torch.from_numpy(a).to(dt) for a, dt in zip((gq, gk, gv), ctx.dtypes)]
        return out[0], out[1], out[2], None, None, None


def attention(Q, K, V, causal=True, log_values=False, state=None):
    """Q, K: [B, H, n, dk], V: [B, H, n, dv]; differentiable; state is updated in place."""
    return LogAttentionFunction.apply(Q, K, V, causal, log_values, state)


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
        fits = (self.state is not None and self.state.heads == heads and
                self.state.d_key == q.shape[-1] and self.state.d_val == lv.shape[-1])
        if not (using_prev_context and fits):
            self.state = _logattn.State(1, heads, q.shape[-1], lv.shape[-1], log_values=True)
        y = attention(q, k, lv, causal=self.is_causal, log_values=True, state=self.state)
        return y.reshape(*lead, y.shape[-2], y.shape[-1])
