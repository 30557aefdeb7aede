"""logattn: softmax attention with constant cost per token (Heinsen, 2024).

numpy interface (float32, C order):
    y, log_d = logattn.forward(q, k, v, causal=True, log_values=False, state=None)
    gq, gk, gv = logattn.backward(q, k, v, y, log_d, gy, causal=True, log_values=False)
    y, log_d = logattn.step(q, k, v, state)          # one token per head
    state = logattn.State(batch, heads, d_key, d_val, log_values=False)
PyTorch (when importable): `import logattn.torch` registers the operators
torch.ops.logattn.attention / attention_backward (logattn/torch_ops.py) and gives
logattn.torch.attention(Q, K, V, causal, log_values, initial_state, output_final_state) and
logattn.torch.LogAttention, with the reference's calling convention
forward(Q, K, log_V, using_prev_context=False) -> log Y.
"""
from ._logattn import Error, State, __version__, add_keys, backward, forward, read, step

__all__ = ["Error", "State", "__version__", "add_keys", "backward", "forward", "read", "step"]
