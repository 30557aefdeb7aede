"""The numpy interface against a float64 quadratic oracle written in numpy."""
import unittest

import numpy as np

import logattn


def oracle(q, k, v, causal, log_values):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    # scores[b, h, t, s, d] = q_td + k_sd
    a = q[:, :, :, None, :] + k[:, :, None, :, :]
    if causal:
        n = q.shape[2]
        mask = np.tril(np.ones((n, k.shape[2]), dtype=bool))
        a = np.where(mask[None, None, :, :, None], a, -np.inf)
    mx = a.max(axis=(3, 4), keepdims=True)
    w = np.exp(a - mx).sum(axis=4)  # [B, H, nq, nk]
    log_d = np.log(w.sum(axis=3)) + mx[..., 0, 0]
    w = w / w.sum(axis=3, keepdims=True)
    if log_values:
        return np.log(w @ np.exp(v)), log_d
    return w @ v, log_d


U = 2.0 ** -24    # float32's unit roundoff
ETA = 2.0 ** -126  # float32's smallest normal number
GAP = np.exp(30.0)  # the chunked kernels' largest reference gap (head_kernels.h)


def bound(q, k, v, causal, log_values, cast=False):
    """Per-element error bounds of a float32 forward (tests/ops/attention/test_util.h):
    c_t (u S_tj + eta e^G V_t) for values, (c_t + 5 L_t + 3 + |log y|) u for log-values and
    (8 A_t + 2 + 3 n_t + d_key + |log D| + 1) u for log D, with A_t = max |q_t| + max visible
    |k|, n_t the visible keys, S_tj = sum_s w_ts |v_sj| / D_t, V_t / L_t the largest visible
    |v| / |log v|. cast: the inputs are float64 rounded to float32 on the way in, one more
    rounding of each argument (u (|q| + |k|) <= 2 u A_t, and u L_t for log-values)."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    n_q, n_k, dk = q.shape[2], k.shape[2], q.shape[3]
    vis = np.arange(n_q)[:, None] >= np.arange(n_k)[None, :] if causal else np.ones((n_q, n_k), bool)
    n_t = vis.sum(axis=1)
    kabs = np.abs(k).max(axis=3)  # [B, H, nk]
    kmax = np.where(vis[None, None], kabs[:, :, None, :], 0).max(axis=3)
    a_t = np.abs(q).max(axis=3) + kmax  # [B, H, nq]
    c_t = 2 * (8 * a_t + 2) + 2 * (3 * n_t + dk) + 1 + (4 * a_t if cast else 0)
    y, log_d = oracle(q, k, v, causal, log_values)
    ld_tol = (8 * a_t + 2 + 3 * n_t + dk + np.abs(log_d) + 1) * U
    if log_values:
        lmax = np.where(vis[None, None, :, :, None], np.abs(v)[:, :, None], 0).max(axis=(3, 4))
        return (c_t + (7 if cast else 5) * lmax + 3)[..., None] * U + np.abs(y) * U, ld_tol
    s_mag, _ = oracle(q, k, np.abs(v), causal, False)
    vmax = np.where(vis[None, None, :, :, None], np.abs(v)[:, :, None], 0).max(axis=(3, 4))
    return c_t[..., None] * (U * s_mag + ETA * GAP * vmax[..., None]), ld_tol


def grad_bound(q, k, v, gy, causal, log_values, cast=False):
    """Per-element error bounds of a float32 backward (test_util.h): c (u abs + eta (1 +
    e^G unit + under)), with abs the magnitudes of the terms each gradient adds, unit the
    same with each weight replaced by 1, under (log-values) the value factors exp(log v -
    C_j) replaced by 1; c = 2 (8 A + 2) + 2 (3 n + d_key + d_val) + 8 (+ 4 L + 2), A = max
    (|q| + |log D|) + max |k| over the head (one head, [n, d] arrays)."""
    q, k, v, gy = (x.astype(np.float64) for x in (q, k, v, gy))
    n_q, n_k, dk, dv = q.shape[0], k.shape[0], q.shape[1], v.shape[1]
    y, log_d = oracle(q[None, None], k[None, None], v[None, None], causal, log_values)
    y, log_d = y[0, 0], log_d[0, 0]
    mask = np.tril(np.ones((n_q, n_k))) if causal else np.ones((n_q, n_k))
    w = np.exp(q[:, None, :] + k[None, :, :] - log_d[:, None, None]) * mask[:, :, None]
    if log_values:
        share = np.exp(v[None, :, :] - y[:, None, :])  # [t, s, j]: v_sj / Y_tj
        terms = share * gy[:, None, :]
        r_abs = np.abs(terms).sum(axis=2) + np.abs(gy).sum(axis=1)[:, None]
        under = (np.exp(v.max(axis=0)[None, :] - y) * np.abs(gy)).sum(axis=1)  # [t]
        unit_v = (np.abs(terms) * mask[:, :, None]).sum(axis=0) * dk
        abs_v = (w.sum(axis=2)[:, :, None] * np.abs(terms)).sum(axis=0)
    else:
        s_mag, _ = oracle(q[None, None], k[None, None], np.abs(v)[None, None], causal, False)
        r_abs = np.abs(gy) @ np.abs(v).T + (np.abs(gy) * s_mag[0, 0]).sum(axis=1)[:, None]
        under = np.zeros(n_q)
        unit_v = mask.T @ np.abs(gy) * dk
        abs_v = w.sum(axis=2).T @ np.abs(gy)
    r_abs = r_abs * mask
    wu = w * under[:, None, None]
    abs_q, abs_k = (w * r_abs[:, :, None]).sum(axis=1), (w * r_abs[:, :, None]).sum(axis=0)
    unit_q = np.repeat(r_abs.sum(axis=1)[:, None], dk, axis=1)
    unit_k = np.repeat(r_abs.sum(axis=0)[:, None], dk, axis=1)
    a = (np.abs(q) + np.abs(log_d)[:, None]).max() + np.abs(k).max()
    lmax = np.abs(v[np.isfinite(v)]).max() if log_values else 0.0
    c = 2 * (8 * a + 2) + 2 * (3 * n_k + dk + dv) + 8 + 4 * lmax + 2
    if cast:
        c += 4 * a + 2 * lmax
    return [c * (U * ab + ETA * (1 + GAP * un + ud)) for ab, un, ud in
            ((abs_q, unit_q, wu.sum(axis=1)), (abs_k, unit_k, wu.sum(axis=0)), (abs_v, unit_v, 0))]


def assert_within(test, got, want, tol):
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    test.assertTrue(np.all(err <= tol), f"at {worst}: got {got[worst]}, want {want[worst]}, "
                                        f"bound {tol[worst]}")


class NumpyInterface(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        self.q = rng.standard_normal((2, 3, 70, 8)).astype(np.float32)
        self.k = rng.standard_normal((2, 3, 70, 8)).astype(np.float32)
        self.v = rng.standard_normal((2, 3, 70, 5)).astype(np.float32)

    def test_forward_matches_oracle(self):
        for causal in (True, False):
            for log_values in (False, True):
                y, log_d = logattn.forward(self.q, self.k, self.v, causal=causal,
                                           log_values=log_values)
                ry, rl = oracle(self.q, self.k, self.v, causal, log_values)
                ty, tl = bound(self.q, self.k, self.v, causal, log_values)
                assert_within(self, y, ry, ty)
                assert_within(self, log_d, rl, tl)

    def test_steps_equal_one_call(self):
        state = logattn.State(2, 3, 8, 5)
        ys = []
        for t in range(70):
            y, _ = logattn.step(self.q[:, :, t], self.k[:, :, t], self.v[:, :, t], state)
            ys.append(y)
        ref, _ = oracle(self.q, self.k, self.v, True, False)
        assert_within(self, np.stack(ys, axis=2), ref, bound(self.q, self.k, self.v, True, False)[0])
        self.assertEqual(state.tokens, 70)
        self.assertEqual(state.nbytes, 2 * 3 * (2 * 8 + 5 + 8 * 5) * 4)

    def test_backward_matches_finite_differences_of_oracle(self):
        q, k, v = (x[:1, :1, :12] for x in (self.q, self.k, self.v))
        y, log_d = logattn.forward(q, k, v)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        gq, gk, gv = logattn.backward(q, k, v, y, log_d, gy)
        # Per element (test_util.h's backward bound): c u times the magnitudes of the terms
        # each gradient adds, w_tsd (|v_s . g_t| + S_t . |g_t|) for q and k and w_ts |g_t|
        # for v, plus the central difference's own error: its truncation estimated from
        # D(2h) - D(h) = 3 C h^2 and the float64 loss's rounding, u64 sum |gy y| / h.
        qd, kd, vd, gd = (x.astype(np.float64)[0, 0] for x in (q, k, v, gy))
        n, dk, dv = qd.shape[0], qd.shape[1], vd.shape[1]
        ry, rl = oracle(q, k, v, True, False)
        s_mag, _ = oracle(q, k, np.abs(v), True, False)
        w = np.exp(qd[:, None, :] + kd[None, :, :] - rl[0, 0][:, None, None])  # [t, s, d]
        w = w * np.tril(np.ones((n, n)))[:, :, None]
        r_abs = np.abs(gd) @ np.abs(vd).T + (np.abs(gd) * s_mag[0, 0]).sum(axis=1)[:, None]
        mags = {"q": (w * r_abs[:, :, None]).sum(axis=1), "k": (w * r_abs[:, :, None]).sum(axis=0),
                "v": w.sum(axis=2).T @ np.abs(gd)}
        a = (np.abs(qd) + np.abs(rl[0, 0])[:, None]).max() + np.abs(kd).max()
        c = 2 * (8 * a + 2) + 2 * (3 * n + dk + dv) + 8
        scale = 1 + np.abs(gd * ry[0, 0]).sum()

        def diff(x, idx, h):
            xp, xm = x.astype(np.float64), x.astype(np.float64)
            xp[idx] += h
            xm[idx] -= h
            args_p = [xp if a is x else a for a in (q, k, v)]
            args_m = [xm if a is x else a for a in (q, k, v)]
            return ((oracle(*args_p, True, False)[0] - oracle(*args_m, True, False)[0])
                    * gy).sum() / (2 * h)

        for name, x, g in (("q", q, gq), ("k", k, gk), ("v", v, gv)):
            for idx in np.ndindex(x.shape):
                d1, d2 = diff(x, idx, 1e-5), diff(x, idx, 2e-5)
                tol = c * (U * mags[name][idx[2:]] + ETA) + 2 * abs(d2 - d1) / 3 \
                    + 8 * 2.0 ** -53 * scale / 1e-5
                self.assertLessEqual(abs(g[idx] - d1), tol, f"{name}{idx}")

    def test_state_log_space_round_trip(self):
        state = logattn.State(2, 3, 8, 5, log_values=True)
        logattn.forward(self.q, self.k, self.v, log_values=True, state=state)
        hs, hz = state.to_log_space()
        back = logattn.State.from_log_space(hs, hz, log_values=True, tokens=state.tokens)
        q2 = self.q[:, :, :10].copy()
        y1, _ = logattn.forward(q2, self.k[:, :, :10], self.v[:, :, :10], log_values=True,
                                state=state)
        y2, _ = logattn.forward(q2, self.k[:, :, :10], self.v[:, :, :10], log_values=True,
                                state=back)
        # Both within the forward bound of the exact log outputs, the rebuilt state adding the
        # round trip through float32 log space: (3 H + 2) u, H = max |hs|, |hz|.
        k_all = np.concatenate([self.k, self.k[:, :, :10]], axis=2)
        v_all = np.concatenate([self.v, self.v[:, :, :10]], axis=2)
        q_all = np.concatenate([np.zeros_like(self.q), q2], axis=2)
        ty, _ = bound(q_all, k_all, v_all, True, True)
        h_max = max(np.abs(hs[np.isfinite(hs)]).max(), np.abs(hz).max())
        assert_within(self, y1, y2.astype(np.float64),
                      2 * ty[:, :, 70:] + 2 * (3 * h_max + 2) * U)

    def test_non_causal_streaming(self):
        state = logattn.State(2, 3, 8, 5)
        logattn.add_keys(self.k[:, :, :30], self.v[:, :, :30], state)
        logattn.add_keys(self.k[:, :, 30:], self.v[:, :, 30:], state)
        y, _ = logattn.read(self.q[:, :, :4], state)
        ref, _ = oracle(self.q[:, :, :4], self.k, self.v, False, False)
        assert_within(self, y, ref, bound(self.q[:, :, :4], self.k, self.v, False, False)[0])

    def test_bad_input_raises_value_error(self):
        with self.assertRaisesRegex(ValueError, "forward: q must have 4 dimensions"):
            logattn.forward(self.q[0], self.k, self.v)
        with self.assertRaisesRegex(ValueError, "n_q == n_k"):
            logattn.forward(self.q[:, :, :5], self.k, self.v)
        bad = self.k.copy()
        bad[0, 0, 0, 0] = np.nan
        with self.assertRaisesRegex(ValueError, "k has a non-finite value"):
            logattn.forward(self.q, bad, self.v)
        # Sizes from the caller are ranges, not allocations (2^62 ended the interpreter).
        for chunk in (0, -1, 2**62, 4097):
            with self.assertRaisesRegex(ValueError, r"chunk must be in \[1, 4096\]"):
                logattn.forward(self.q, self.k, self.v, chunk=chunk)
            with self.assertRaisesRegex(ValueError, r"chunk must be in \[1, 4096\]"):
                logattn.backward(self.q, self.k, self.v, self.q, self.q[..., 0], self.q,
                                 chunk=chunk)
        hs = np.zeros((1, 1, 2, 2), np.float32)
        hz = np.zeros((1, 1, 2), np.float32)
        with self.assertRaisesRegex(ValueError, "tokens must be at least 0"):
            logattn.State.from_log_space(hs, hz, tokens=-5)
        # A state no keys could make: NaN, +inf, a negative normaliser.
        st = logattn.State(1, 1, 2, 2)
        for index, value, message in [(-1, np.nan, r"s\[3\] = nan"), (0, np.inf, "m is finite"),
                                      (2, -1.0, "z is finite and >= 0")]:
            raw = st.raw()
            raw[0, 0, index] = value
            with self.assertRaisesRegex(ValueError, message):
                logattn.State.from_raw(raw, 2, 2)


if __name__ == "__main__":
    unittest.main()
