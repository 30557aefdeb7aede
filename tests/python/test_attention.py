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
                np.testing.assert_allclose(y, ry, rtol=1e-4, atol=1e-5)
                np.testing.assert_allclose(log_d, rl, rtol=1e-5, atol=1e-5)

    def test_steps_equal_one_call(self):
        state = logattn.State(2, 3, 8, 5)
        ys = []
        for t in range(70):
            y, _ = logattn.step(self.q[:, :, t], self.k[:, :, t], self.v[:, :, t], state)
            ys.append(y)
        ref, _ = logattn.forward(self.q, self.k, self.v)
        np.testing.assert_allclose(np.stack(ys, axis=2), ref, rtol=1e-4, atol=1e-5)
        self.assertEqual(state.tokens, 70)
        self.assertEqual(state.nbytes, 2 * 3 * (2 * 8 + 5 + 8 * 5) * 4)

    def test_backward_matches_finite_differences_of_oracle(self):
        q, k, v = (x[:1, :1, :12] for x in (self.q, self.k, self.v))
        y, log_d = logattn.forward(q, k, v)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        gq, gk, gv = logattn.backward(q, k, v, y, log_d, gy)
        h = 1e-6
        for x, g in ((q, gq), (k, gk), (v, gv)):
            num = np.zeros(x.shape)
            for idx in np.ndindex(x.shape):
                xp, xm = x.astype(np.float64), x.astype(np.float64)
                xp[idx] += h
                xm[idx] -= h
                args_p = [xp if a is x else a for a in (q, k, v)]
                args_m = [xm if a is x else a for a in (q, k, v)]
                num[idx] = ((oracle(*args_p, True, False)[0] - oracle(*args_m, True, False)[0])
                            * gy).sum() / (2 * h)
            self.assertLess(np.linalg.norm(g - num) / np.linalg.norm(num), 1e-4)

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
        np.testing.assert_allclose(y1, y2, atol=1e-4)

    def test_non_causal_streaming(self):
        state = logattn.State(2, 3, 8, 5)
        logattn.add_keys(self.k[:, :, :30], self.v[:, :, :30], state)
        logattn.add_keys(self.k[:, :, 30:], self.v[:, :, 30:], state)
        y, _ = logattn.read(self.q[:, :, :4], state)
        ref, _ = oracle(self.q[:, :, :4], self.k, self.v, False, False)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)

    def test_bad_input_raises_value_error(self):
        with self.assertRaisesRegex(ValueError, "forward: q must have 4 dimensions"):
            logattn.forward(self.q[0], self.k, self.v)
        with self.assertRaisesRegex(ValueError, "n_q == n_k"):
            logattn.forward(self.q[:, :, :5], self.k, self.v)
        bad = self.k.copy()
        bad[0, 0, 0, 0] = np.nan
        with self.assertRaisesRegex(ValueError, "k has a non-finite value"):
            logattn.forward(self.q, bad, self.v)


if __name__ == "__main__":
    unittest.main()
