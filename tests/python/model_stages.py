"""Stage-by-stage error bounds of logattn's float32 language model against float64 PyTorch.

Each stage of the C++ model (its Trace: every stage's output, src/model/trace.h) is checked
on the float32 inputs that stage really had: the float64 reference is the same stage of
logattn.torch_model (its modules, or their autograd for the backward) applied to those
inputs, and the tolerance is that stage's own error bound. By induction every value the
model computes is then the exact stage of its actual inputs, within the stage's bound.

Why not one bound for the whole network: a worst-case bound carried through it (each
operation's |Jacobian| times its inputs' bounds, plus its own) grows by about ten times per
operation here and passes the logits' own size within two layers, so it would check
nothing; per stage, the bounds are a few hundred u of the values' magnitudes.

The stage bounds (first order in u): a float32 sum of k products, in any order and with or
without FMA, is off by at most (k + 2) u times the sum of their magnitudes (one rounding per
addition and product, one for a bias or an accumulated C); an elementary function (SLEEF,
libm) by 1 ulp, 2 u relative. The attention kernels' bounds are their tests'
(test_attention.bound and grad_bound; tests/ops/softmax_attention_test.cc for the twin).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import test_attention

U = 2.0 ** -24  # float32's unit roundoff
U64 = 2.0 ** -53
LN_EPS = 1e-5


def sum_c(k):
    """A float32 sum of k products, then one rounding more (a bias, an accumulated C)."""
    return (k + 2) * U


def mean(x):
    return x.mean(-1, keepdim=True)


def flat(x):
    return x.reshape(-1, x.shape[-1])


def linear_local(x, w, b=None):
    """y = x w^T + b."""
    mag = x.abs() @ w.abs().T
    return sum_c(w.shape[1]) * (mag + b.abs() if b is not None else mag)


def product_grads_local(x, gy):
    """dW = gy^T x and db = sum gy over the rows."""
    x, gy = flat(x), flat(gy)
    n = x.shape[0]
    return sum_c(n) * (gy.abs().T @ x.abs()), sum_c(n) * gy.abs().sum(0)


def layernorm_stats(x):
    mu = mean(x)
    r = 1 / torch.sqrt(mean((x - mu) ** 2) + LN_EPS)
    return mu, r, (x - mu) * r


def layernorm_local(x, w, y):
    # The statistics are double sums rounded once to float (u |mu|; 2 u r with the float
    # eps); x - mu, * r, * w, + b round once each (src/ops/layernorm.cc).
    mu, r, xh = layernorm_stats(x)
    return U * (w.abs() * r * mu.abs() + 5 * (xh * w).abs() + y.abs())


def layernorm_backward_local(x, w, gy):
    """dx = r (w gy - mean(w gy) - xh mean(w gy xh)): two float sums of E terms, each term off
    by a few roundings and by the float mean's u |mu| r, and the final combination: c = E + 8.
    dw = sum gy xh, db = sum gy over the rows."""
    mu, r, xh = layernorm_stats(x)
    E = x.shape[-1]
    gp = gy * w
    s2 = mean(gp * xh)
    rm = r * mu.abs()
    dx = (E + 8) * U * r * (gp.abs() + mean(gp.abs()) + xh.abs() * mean(gp.abs() * (xh.abs() + rm))
                            + (xh.abs() + rm) * s2.abs())
    n = flat(x).shape[0]
    dw = (n + 6) * U * flat(gy.abs() * (xh.abs() + rm)).sum(0)
    return dx, dw, sum_c(n) * flat(gy.abs()).sum(0)


def glu_local(y):
    # exp (2 u), 1 + exp (u), the division (u), relative to y; one more for good measure.
    return 5 * U * y.abs()


def glu_backward_local(g, gy):
    a, b = g.chunk(2, -1)
    s = torch.sigmoid(b)
    ga, gb = gy * s, gy * a * s * (1 - s)
    # sigmoid off by 4 u s, so 1 - s by 4 u s + u (1 - s); three products.
    return torch.cat([4 * U * ga.abs(), 8 * U * gb.abs() + 4 * U * (gy * a).abs() * s * s], -1)


def recurrence_step_local(u, l, prev, h):
    """One step h = logaddexp(log sigmoid(u) + prev, l) from the float prev the model had:
    log1p(exp(-|u|)) off by 4 u, the two sums by u |log sigmoid| and u |x|, the second
    log1p(exp(-|x - l|)) by 4 u + u |x - l|, and h by u |h|."""
    ls = F.logsigmoid(u)
    x = ls + prev
    return U * (ls.abs() + x.abs() + (x - l).abs() + h.abs() + 8)


def recurrence_backward(u, l, gh):
    """The recurrence's backward (one call of src/ops/elementwise.cc's
    log_recurrence_backward, [B, T, E]) from the forward's float h: its gradients with a
    running bound through time. The stored h is off from the exact h(u, l) by the forward's
    running bound eh (convex weights alpha + beta = 1 carry it); alpha = exp(log sigmoid(u) +
    h_{t-1} - h_t) and beta = exp(l - h_t) are off by those and by their own roundings."""
    ls = F.logsigmoid(u)
    prev, eprev = torch.zeros_like(u[:, 0]), torch.zeros_like(u[:, 0])
    hs, ehs = [], []
    for t in range(u.shape[1]):
        x = ls[:, t] + prev
        h = torch.logaddexp(x, l[:, t])
        alpha, beta = torch.exp(x - h), torch.exp(l[:, t] - h)
        eh = alpha * eprev + recurrence_step_local(u[:, t], l[:, t], prev, h)
        hs.append(h), ehs.append(eh)
        prev, eprev = h, eh
    h, eh = torch.stack(hs, 1), torch.stack(ehs, 1)
    prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
    eprev = torch.cat([torch.zeros_like(h[:, :1]), eh[:, :-1]], 1)
    x = ls + prev
    alpha, beta, sm = torch.exp(x - h), torch.exp(l - h), torch.sigmoid(-u)
    ra = U * (ls.abs() + x.abs() + (x - h).abs() + 6)  # relative, alpha's own roundings
    rb = U * ((l - h).abs() + 3)
    da, db = alpha * (eprev + eh), beta * eh
    gu, gl, egu, egl = (torch.empty_like(u) for _ in range(4))
    carry, ecarry = torch.zeros_like(u[:, 0]), torch.zeros_like(u[:, 0])
    for t in reversed(range(u.shape[1])):
        g = gh[:, t] + carry
        eg = ecarry + U * g.abs()
        a, b, s = alpha[:, t], beta[:, t], sm[:, t]
        gu[:, t], gl[:, t] = g * a * s, g * b
        egu[:, t] = eg * a * s + g.abs() * s * (da[:, t] + a * (ra[:, t] + 5 * U))
        egl[:, t] = eg * b + g.abs() * (db[:, t] + b * (rb[:, t] + U))
        carry = g * a
        ecarry = eg * a + g.abs() * (da[:, t] + a * (ra[:, t] + U))
    return torch.cat([gu, gl], -1), torch.cat([egu, egl], -1)


def twin_row_c(q, k, lv):
    """softmax_attention_test.cc's row_bound_c: 2 (dk + 1) Q_t + 4 Q_t + 4 L_t + 2 (t + 1) +
    8, Q_t = max_j sum_d |q_td k_jd| / sqrt(dk), L_t the largest visible |log v|."""
    T, dk = q.shape[2], q.shape[3]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    Q = ((q.abs() @ k.abs().transpose(-1, -2)) / math.sqrt(dk) * mask).amax(-1)
    L = torch.cummax(lv.abs().amax(-1), -1).values
    t = torch.arange(T, dtype=q.dtype)
    return 2 * (dk + 1) * Q + 4 * Q + 4 * L + 2 * (t + 1) + 8


def attention_local(q, k, lv, logy, twin):
    """[B, H, T, d] -> bound of log y [B, H, T, dv]."""
    if twin:
        return (twin_row_c(q, k, lv)[..., None] + logy.abs()) * U
    args = [t.numpy() for t in (q, k, lv)]
    return torch.from_numpy(test_attention.bound(*args, True, True)[0])


def attention_backward_local(q, k, lv, G, twin):
    """Bounds of the kernels' gradients for q, k, lv given the incoming gradient G."""
    if not twin:
        out = [torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(lv)]
        for b in range(q.shape[0]):
            for h in range(q.shape[1]):
                args = [t[b, h].numpy() for t in (q, k, lv, G)]
                for o, e in zip(out, test_attention.grad_bound(*args, True, True)):
                    o[b, h] = torch.from_numpy(e)
        return out
    # softmax_attention_test.cc: (c_max + 2 T + 2 dk) u times the magnitudes of the terms
    # each gradient adds (p the shares of keys in outputs, w the weights), c_max the largest
    # row's forward c.
    T, dk = q.shape[2], q.shape[3]
    rdk = math.sqrt(dk)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    s = (q @ k.transpose(-1, -2) / rdk).masked_fill(~mask, -math.inf)
    w = torch.softmax(s, -1)
    p = torch.softmax(s[..., None] + lv[:, :, None, :, :], 3)  # [B, H, t, j, dv]
    c = twin_row_c(q, k, lv).amax(-1)[..., None, None] + 2 * T + 2 * dk
    ds = (G.abs()[:, :, :, None, :] * (p + w[..., None])).sum(-1)
    mags = [ds @ k.abs() / rdk, ds.transpose(-1, -2) @ q.abs() / rdk,
            torch.einsum("bhtc,bhtjc->bhjc", G.abs(), p)]
    return [c * U * m for m in mags]


class Stages:
    """The model's stages on a Trace. check(name, got, want, bound) asserts |got - want| <=
    bound element by element; get(name, shape) returns a traced stage in float64."""

    def __init__(self, model, check, get):
        self.m, self.check, self.get = model, check, get
        layer = model.layers[0] if len(model.layers) else None
        self.H, self.dk, self.dv = (layer.n_heads, layer.d_key, layer.d_val) if layer else (0, 0, 0)
        self.twin = layer is not None and layer.attend.__name__ == "softmax_attention"
        self.E = model.embed.weight.shape[1]

    def heads(self, t, B, T):
        return t.view(B, T, self.H, -1).transpose(1, 2).contiguous()

    def tokens_of(self, t, B, T):
        return t.transpose(1, 2).reshape(B, T, -1)

    def qkv(self, proj, B, T):
        return [t.contiguous() for t in self.heads(proj, B, T).split([self.dk, self.dk, self.dv], -1)]

    @torch.no_grad()
    def forward(self, tokens, last_rows=None):
        """tokens [B, T]; last_rows: only these positions reach the final LayerNorm and the
        head (generation keeps each call's last position)."""
        m, check, B, T, E = self.m, self.check, tokens.shape[0], tokens.shape[1], self.E
        get = lambda name, w: self.get(name, (B, T, w))
        emb = get("emb", E)
        check("emb", emb, m.embed.weight[tokens], torch.zeros_like(emb))
        dense = m.embed_pos.dense
        ul = get("ul", 2 * E)
        check("ul", ul, dense(emb), linear_local(emb, dense.weight, dense.bias))
        u, l = ul.split(E, -1)
        h = get("h", E)
        prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
        want = torch.logaddexp(F.logsigmoid(u) + prev, l)
        check("h", h, want, recurrence_step_local(u, l, prev, want))
        x = emb + h
        check("x.0", get("x.0", E), x, U * x.abs())
        for i, layer in enumerate(m.layers):
            ln, lin1 = layer.feedforward1
            lin2, _, lin3 = layer.feedforward2
            x, xn = get(f"x.{i}", E), get(f"xn.{i}", E)
            want = ln(x)
            check(f"xn.{i}", xn, want, layernorm_local(x, ln.weight, want))
            proj = get(f"proj.{i}", lin1.weight.shape[0])
            check(f"proj.{i}", proj, lin1(xn), linear_local(xn, lin1.weight, lin1.bias))
            q, k, lv = self.qkv(proj, B, T)
            want = layer.attend(q, k, lv)
            a = get(f"a.{i}", self.H * self.dv)
            check(f"a.{i}", a, self.tokens_of(want, B, T),
                  self.tokens_of(attention_local(q, k, lv, want, self.twin), B, T))
            g = get(f"g.{i}", 2 * E)
            check(f"g.{i}", g, lin2(a), linear_local(a, lin2.weight, lin2.bias))
            glu, want = get(f"glu.{i}", E), F.glu(g, -1)
            check(f"glu.{i}", glu, want, glu_local(want))
            nxt = get(f"x.{i + 1}" if i + 1 < len(m.layers) else "x_last", E)
            want = x + lin3(glu)
            check(f"x.{i + 1}", nxt, want, linear_local(glu, lin3.weight) + U * want.abs())
        x = get("x_last", E)
        if last_rows is not None:
            x = x[:, last_rows]
        xf, want = self.get("xf", x.shape), m.lnorm(x)
        check("xf", xf, want, layernorm_local(x, m.lnorm.weight, want))
        logits = self.get("logits", x.shape[:2] + (-1,))
        check("logits", logits, xf @ m.embed.weight.T, linear_local(xf, m.embed.weight))
        return logits

    @torch.no_grad()
    def loss(self, logits, targets, got):
        """Mean cross-entropy: rows' log-sum-exp in double (src/ops/elementwise.cc), the
        result kept as float."""
        z, y = flat(logits), targets.reshape(-1)
        lse = torch.logsumexp(z, -1)
        zy = z[torch.arange(z.shape[0]), y]
        want = (lse - zy).mean()
        bound = U * want.abs() + (z.shape[1] + z.shape[0] + 4) * U64 * (lse.abs() + zy.abs()).mean()
        self.check("loss", got.reshape(1), want.reshape(1), bound.reshape(1))

    def backward(self, tokens, targets, grads):
        """The backward's stages, and every parameter's gradient (grads: name -> C++ gradient)
        as the product of its traced inputs."""
        m, check, B, T, E = self.m, self.check, tokens.shape[0], tokens.shape[1], self.E
        get = lambda name, w: self.get(name, (B, T, w))
        N, V, L = B * T, m.embed.weight.shape[0], len(m.layers)

        def param(name, want, bound):
            check(name, grads[name], want, bound)

        def vjp(f, inputs, gy):
            inputs = [t.detach().requires_grad_() if t.dtype == torch.float64 and not t.requires_grad
                      else t for t in inputs]
            with torch.enable_grad():
                return torch.autograd.grad(f(*inputs), inputs, gy)

        logits, dlogits = get("logits", V), get("dlogits", V)
        P = torch.softmax(logits, -1)
        want = (P - F.one_hot(targets, V).double()) / N
        # P from a double exp rounded to float and its product with the float scale 1 / N
        # (itself rounded: u |P - 1|), then the target's - scale.
        onehot = F.one_hot(targets, V).double()
        check("dlogits", dlogits, want, U * (3 * P + onehot) / N + U * want.abs())
        Em = m.embed.weight
        xf, dxf = get("xf", E), get("dxf", E)
        check("dxf", dxf, dlogits @ Em, sum_c(V) * (dlogits.abs() @ Em.abs()))
        head = flat(dlogits).T @ flat(xf)
        head_bound = product_grads_local(xf, dlogits)[0]
        x = get("x_last", E)
        gx, gw, gb = vjp(lambda x, w, b: F.layer_norm(x, (E,), w, b, LN_EPS),
                         [x, m.lnorm.weight, m.lnorm.bias], dxf)
        bx, bw, bb = layernorm_backward_local(x, m.lnorm.weight, dxf)
        check(f"dx.{L}", get(f"dx.{L}", E), gx, bx)
        param("lnorm.weight", gw, bw), param("lnorm.bias", gb, bb)
        for i in reversed(range(L)):
            layer, pre = m.layers[i], f"layers.{i}."
            ln, lin1 = layer.feedforward1
            lin2, _, lin3 = layer.feedforward2
            dnext = get(f"dx.{i + 1}", E)
            glu, dglu = get(f"glu.{i}", E), get(f"dglu.{i}", E)
            check(f"dglu.{i}", dglu, dnext @ lin3.weight, sum_c(E) * (dnext.abs() @ lin3.weight.abs()))
            param(pre + "feedforward2.2.weight", flat(dnext).T @ flat(glu),
                  product_grads_local(glu, dnext)[0])
            g, dg = get(f"g.{i}", 2 * E), get(f"dg.{i}", 2 * E)
            (want,) = vjp(lambda g: F.glu(g, -1), [g], dglu)
            check(f"dg.{i}", dg, want, glu_backward_local(g, dglu))
            a, da = get(f"a.{i}", self.H * self.dv), get(f"da.{i}", self.H * self.dv)
            check(f"da.{i}", da, dg @ lin2.weight, sum_c(2 * E) * (dg.abs() @ lin2.weight.abs()))
            bw, bb = product_grads_local(a, dg)
            param(pre + "feedforward2.0.weight", flat(dg).T @ flat(a), bw)
            param(pre + "feedforward2.0.bias", flat(dg).sum(0), bb)
            proj = get(f"proj.{i}", lin1.weight.shape[0])
            q, k, lv = self.qkv(proj, B, T)
            G = self.heads(da, B, T)
            want = vjp(layer.attend, [q, k, lv], G)
            bounds = attention_backward_local(q, k, lv, G, self.twin)
            dproj = get(f"dproj.{i}", lin1.weight.shape[0])
            check(f"dproj.{i}", dproj, self.tokens_of(torch.cat(want, -1), B, T),
                  self.tokens_of(torch.cat(bounds, -1), B, T))
            xn, dxn = get(f"xn.{i}", E), get(f"dxn.{i}", E)
            check(f"dxn.{i}", dxn, dproj @ lin1.weight,
                  sum_c(lin1.weight.shape[0]) * (dproj.abs() @ lin1.weight.abs()))
            bw, bb = product_grads_local(xn, dproj)
            param(pre + "feedforward1.1.weight", flat(dproj).T @ flat(xn), bw)
            param(pre + "feedforward1.1.bias", flat(dproj).sum(0), bb)
            x = get(f"x.{i}", E)
            gx, gw, gb = vjp(lambda x, w, b: F.layer_norm(x, (E,), w, b, LN_EPS),
                             [x, ln.weight, ln.bias], dxn)
            bx, bw, bb = layernorm_backward_local(x, ln.weight, dxn)
            want = dnext + gx
            check(f"dx.{i}", get(f"dx.{i}", E), want, bx + U * want.abs())
            param(pre + "feedforward1.0.weight", gw, bw), param(pre + "feedforward1.0.bias", gb, bb)
        dense = m.embed_pos.dense
        ul, dul, dx0 = get("ul", 2 * E), get("dul", 2 * E), get("dx.0", E)
        u, l = ul.split(E, -1)
        want, bound = recurrence_backward(u, l, dx0)
        check("dul", dul, want, bound)
        emb, demb = get("emb", E), get("demb", E)
        # A gemm adding into dx.0 (beta 1): its sum holds one term more.
        check("demb", demb, dx0 + dul @ dense.weight,
              sum_c(2 * E + 1) * (dul.abs() @ dense.weight.abs() + dx0.abs()))
        bw, bb = product_grads_local(emb, dul)
        param("embed_pos.dense.weight", flat(dul).T @ flat(emb), bw)
        param("embed_pos.dense.bias", flat(dul).sum(0), bb)
        # The tied embedding: the head's product, then each token's row added in order.
        tok = tokens.reshape(-1)
        counts = torch.bincount(tok, minlength=V).double()[:, None]
        param("embed.weight", head.index_add(0, tok, flat(demb)),
              head_bound + (counts + 2) * U * head.abs().index_add(0, tok, flat(demb).abs()))
