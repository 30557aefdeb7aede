"""logattn's attention as PyTorch operators, registered with torch.library:

    y, log_d, final_state = torch.ops.logattn.attention(
        q, k, v, causal, log_values, initial_state, output_final_state)
    gq, gk, gv = torch.ops.logattn.attention_backward(
        q, k, v, y, log_d, gy, causal, log_values, initial_state)

q, k: [B, H, n, d_key], v: [B, H, n, d_val] (log-values when log_values) -> y [B, H, n, d_val]
(log y for log-values) in q's dtype, log_d [B, H, n] (each query's log normaliser, float32,
what the backward needs). initial_state (optional): a state [B, H, 2 d_key + d_val + d_key
d_val] (float32) to continue from; final_state: the state after the last key when
output_final_state, else an empty tensor. No gradient flows into or out of the states.

Each operator has a CPU kernel (logattn's float32 kernels; contiguous float32 tensors are
passed without copies, other dtypes are converted), a Meta kernel (shapes only: what
torch.compile and tracing with meta tensors need) and, for attention, an Autograd kernel
whose backward is attention_backward. Importing this module registers them.
"""
import torch

from . import _logattn

_LIB = torch.library.Library("logattn", "DEF")
_LIB.define("attention(Tensor q, Tensor k, Tensor v, bool causal=True, bool log_values=False, "
            "Tensor? initial_state=None, bool output_final_state=False) "
            "-> (Tensor, Tensor, Tensor)")
_LIB.define("attention_backward(Tensor q, Tensor k, Tensor v, Tensor y, Tensor log_d, Tensor gy, "
            "bool causal=True, bool log_values=False, Tensor? initial_state=None) "
            "-> (Tensor, Tensor, Tensor)")


def state_size(d_key, d_val):
    """Floats per head of a state: m [d_key], z [d_key], c [d_val], s [d_key, d_val]."""
    return 2 * d_key + d_val + d_key * d_val


def _check(op, q, k, v, initial_state):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 4:
            raise ValueError(f"{op}: {name} must be [B, H, n, d], got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{op}: {name} must be a floating-point tensor, got {x.dtype}")
    if q.shape[:2] != k.shape[:2] or q.shape[:2] != v.shape[:2]:
        raise ValueError(f"{op}: q, k and v must share [B, H], got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[3] != k.shape[3] or k.shape[2] != v.shape[2]:
        raise ValueError(f"{op}: q and k need the same d_key and k and v the same n, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if initial_state is not None:
        want = (q.shape[0], q.shape[1], state_size(q.shape[3], v.shape[3]))
        if tuple(initial_state.shape) != want:
            raise ValueError(f"{op}: initial_state must be {want} for these q, k, v, got "
                             f"{tuple(initial_state.shape)}")


def _array(x):
    """A float32 numpy view of x: no copy when x is contiguous float32 on the CPU."""
    return x.detach().to(torch.float32).contiguous().numpy()


def _state(initial_state, q, v, log_values, needed):
    if initial_state is not None:
        return _logattn.State.from_raw(_array(initial_state), q.shape[3], v.shape[3], log_values)
    if needed:
        return _logattn.State(q.shape[0], q.shape[1], q.shape[3], v.shape[3], log_values)
    return None


def _attention_cpu(q, k, v, causal=True, log_values=False, initial_state=None,
                   output_final_state=False):
    _check("logattn.attention", q, k, v, initial_state)
    state = _state(initial_state, q, v, log_values, output_final_state)
    y, log_d = _logattn.forward(_array(q), _array(k), _array(v), causal=causal,
                                log_values=log_values, state=state)
    final = (torch.from_numpy(state.raw()) if output_final_state
             else torch.empty(0, dtype=torch.float32))
    return torch.from_numpy(y).to(q.dtype), torch.from_numpy(log_d), final


def _attention_meta(q, k, v, causal=True, log_values=False, initial_state=None,
                    output_final_state=False):
    _check("logattn.attention", q, k, v, initial_state)
    B, H, n, dk = q.shape
    dv = v.shape[3]
    final = (B, H, state_size(dk, dv)) if output_final_state else (0,)
    return (q.new_empty((B, H, n, dv)), q.new_empty((B, H, n), dtype=torch.float32),
            q.new_empty(final, dtype=torch.float32))


def _backward_cpu(q, k, v, y, log_d, gy, causal=True, log_values=False, initial_state=None):
    _check("logattn.attention_backward", q, k, v, initial_state)
    state = _state(initial_state, q, v, log_values, False)
    gq, gk, gv = _logattn.backward(_array(q), _array(k), _array(v), _array(y), _array(log_d),
                                   _array(gy), causal=causal, log_values=log_values,
                                   state_in=state)
    return (torch.from_numpy(gq).to(q.dtype), torch.from_numpy(gk).to(k.dtype),
            torch.from_numpy(gv).to(v.dtype))


def _backward_meta(q, k, v, y, log_d, gy, causal=True, log_values=False, initial_state=None):
    _check("logattn.attention_backward", q, k, v, initial_state)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _below_autograd(op, *args):
    # The call reaches the CPU (or Meta) kernel. torch 1.13's guard is an object that holds
    # while it lives.
    guard = torch._C._AutoDispatchBelowAutograd()
    try:
        return op(*args)
    finally:
        del guard


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, log_values, initial_state, output_final_state):
        y, log_d, final = _below_autograd(torch.ops.logattn.attention, q, k, v, causal,
                                          log_values, initial_state, output_final_state)
        ctx.save_for_backward(q, k, v, y, log_d, initial_state)
        ctx.causal, ctx.log_values = causal, log_values
        ctx.mark_non_differentiable(log_d, final)
        return y, log_d, final

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy, _g_log_d, _g_final):
        q, k, v, y, log_d, initial_state = ctx.saved_tensors
        if gy is None:
            gy = torch.zeros_like(y)
        gq, gk, gv = torch.ops.logattn.attention_backward(q, k, v, y, log_d, gy, ctx.causal,
                                                          ctx.log_values, initial_state)
        return gq, gk, gv, None, None, None, None


def _attention_autograd(q, k, v, causal=True, log_values=False, initial_state=None,
                        output_final_state=False):
    return _Attention.apply(q, k, v, causal, log_values, initial_state, output_final_state)


_LIB.impl("attention", _attention_cpu, "CPU")
_LIB.impl("attention", _attention_meta, "Meta")
_LIB.impl("attention", _attention_autograd, "Autograd")
_LIB.impl("attention_backward", _backward_cpu, "CPU")
_LIB.impl("attention_backward", _backward_meta, "Meta")
# The backward is not differentiated again (once_differentiable above); its Autograd kernel
# only passes the call down.
_LIB.impl("attention_backward",
          lambda *args: _below_autograd(torch.ops.logattn.attention_backward, *args), "Autograd")
