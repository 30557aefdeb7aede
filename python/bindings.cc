// pybind11 bindings of the attention library: numpy arrays in and out, float32, C order.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "logattn/attention.h"

namespace py = pybind11;
using logattn::AttentionDims;
using logattn::AttentionOptions;
using logattn::AttentionState;
using logattn::Values;

namespace {

using Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::span<const float> view(const Array& a) {
  return {a.data(), static_cast<size_t>(a.size())};
}

std::span<float> view_mut(Array& a) {
  return {a.mutable_data(), static_cast<size_t>(a.size())};
}

void expect_ndim(const char* op, const char* name, const Array& a, int ndim) {
  if (a.ndim() != ndim)
    throw logattn::Error(std::string(op) + ": " + name + " must have " + std::to_string(ndim) +
                         " dimensions, got " + std::to_string(a.ndim()));
}

Array empty(std::vector<py::ssize_t> shape) {
  return Array(shape);
}

AttentionOptions options(bool causal, bool log_values, int64_t chunk) {
  AttentionOptions opt;
  opt.causal = causal;
  opt.values = log_values ? Values::kLog : Values::kSigned;
  opt.chunk = chunk;
  return opt;
}

py::tuple forward(const Array& q, const Array& k, const Array& v, bool causal, bool log_values,
                  AttentionState* state, int64_t chunk) {
  for (auto [name, a] : {std::pair{"q", &q}, {"k", &k}, {"v", &v}})
    expect_ndim("forward", name, *a, 4);
  const AttentionDims dims{q.shape(0), q.shape(1), q.shape(2), k.shape(2), q.shape(3), v.shape(3)};
  const AttentionOptions opt = options(causal, log_values, chunk);
  Array y = empty({dims.batch, dims.heads, dims.n_q, dims.d_val});
  Array log_d = empty({dims.batch, dims.heads, dims.n_q});
  {
    py::gil_scoped_release release;
    logattn::attention_forward(opt, dims, view(q), view(k), view(v), view_mut(y), view_mut(log_d),
                               state);
  }
  return py::make_tuple(y, log_d);
}

py::tuple backward(const Array& q, const Array& k, const Array& v, const Array& y,
                   const Array& log_d, const Array& gy, bool causal, bool log_values,
                   const AttentionState* state_in, int64_t chunk) {
  for (auto [name, a] : {std::pair{"q", &q}, {"k", &k}, {"v", &v}, {"y", &y}, {"gy", &gy}})
    expect_ndim("backward", name, *a, 4);
  expect_ndim("backward", "log_d", log_d, 3);
  const AttentionDims dims{q.shape(0), q.shape(1), q.shape(2), k.shape(2), q.shape(3), v.shape(3)};
  const AttentionOptions opt = options(causal, log_values, chunk);
  Array gq = empty({dims.batch, dims.heads, dims.n_q, dims.d_key});
  Array gk = empty({dims.batch, dims.heads, dims.n_k, dims.d_key});
  Array gv = empty({dims.batch, dims.heads, dims.n_k, dims.d_val});
  {
    py::gil_scoped_release release;
    logattn::attention_backward(opt, dims, view(q), view(k), view(v), view(y), view(log_d),
                                view(gy), view_mut(gq), view_mut(gk), view_mut(gv), state_in);
  }
  return py::make_tuple(gq, gk, gv);
}

py::tuple step(const Array& q, const Array& k, const Array& v, AttentionState& state) {
  Array y = empty({state.batch(), state.heads(), state.d_val()});
  Array log_d = empty({state.batch(), state.heads()});
  {
    py::gil_scoped_release release;
    logattn::attention_step(view(q), view(k), view(v), view_mut(y), state, view_mut(log_d));
  }
  return py::make_tuple(y, log_d);
}

}  // namespace

PYBIND11_MODULE(_logattn, m) {
  m.doc() = "logattn: softmax attention with constant cost per token (Heinsen, 2024)";
  m.attr("__version__") = LOGATTN_VERSION;
  py::register_exception<logattn::Error>(m, "Error", PyExc_ValueError);

  py::class_<AttentionState>(m, "State", "Constant-size attention state of batch x heads heads")
      .def(
          py::init([](int64_t batch, int64_t heads, int64_t d_key, int64_t d_val, bool log_values) {
            return AttentionState(batch, heads, d_key, d_val,
                                  log_values ? Values::kLog : Values::kSigned);
          }),
          py::arg("batch"), py::arg("heads"), py::arg("d_key"), py::arg("d_val"),
          py::arg("log_values") = false)
      .def_property_readonly("batch", &AttentionState::batch)
      .def_property_readonly("heads", &AttentionState::heads)
      .def_property_readonly("d_key", &AttentionState::d_key)
      .def_property_readonly("d_val", &AttentionState::d_val)
      .def_property_readonly("log_values",
                             [](const AttentionState& s) { return s.values() == Values::kLog; })
      .def_property_readonly("tokens", &AttentionState::tokens)
      .def_property_readonly("nbytes", [](const AttentionState& s) { return s.data().size() * 4; })
      .def(
          "raw",
          [](const AttentionState& s) {
            Array a = empty({s.batch(), s.heads(), s.floats_per_head()});
            std::copy(s.data().begin(), s.data().end(), a.mutable_data());
            return a;
          },
          "A copy of the storage, [B, H, 2 dk + dv + dk dv]: per head m, z, c, s")
      .def_static(
          "from_raw",
          [](const Array& raw, int64_t d_key, int64_t d_val, bool log_values) {
            expect_ndim("State.from_raw", "raw", raw, 3);
            if (d_key < 1 || d_val < 1)
              throw logattn::Error("State.from_raw: d_key and d_val must be at least 1");
            AttentionState s(raw.shape(0), raw.shape(1), d_key, d_val,
                             log_values ? Values::kLog : Values::kSigned);
            if (raw.shape(2) != s.floats_per_head())
              throw logattn::Error("State.from_raw: raw has " + std::to_string(raw.shape(2)) +
                                   " floats per head; d_key " + std::to_string(d_key) +
                                   " and d_val " + std::to_string(d_val) + " need " +
                                   std::to_string(s.floats_per_head()));
            std::copy(raw.data(), raw.data() + raw.size(), s.data().begin());
            s.check_values("State.from_raw");
            return s;
          },
          py::arg("raw"), py::arg("d_key"), py::arg("d_val"), py::arg("log_values") = false,
          "A state from raw() storage")
      .def("reset", &AttentionState::reset)
      .def("copy", [](const AttentionState& s) { return AttentionState(s); })
      .def(
          "to_log_space",
          [](const AttentionState& s) {
            Array hs = empty({s.batch(), s.heads(), s.d_key(), s.d_val()});
            Array hz = empty({s.batch(), s.heads(), s.d_key()});
            s.to_log_space(view_mut(hs), view_mut(hz));
            return py::make_tuple(hs, hz);
          },
          "The paper's log-space state (H_S [B, H, dk, dv], H_Z [B, H, dk])")
      .def_static(
          "from_log_space",
          [](const Array& hs, const Array& hz, bool log_values, int64_t tokens) {
            expect_ndim("State.from_log_space", "h_s", hs, 4);
            return AttentionState::from_log_space(
                hs.shape(0), hs.shape(1), hs.shape(2), hs.shape(3),
                log_values ? Values::kLog : Values::kSigned, view(hs), view(hz), tokens);
          },
          py::arg("h_s"), py::arg("h_z"), py::arg("log_values") = true, py::arg("tokens") = 0);

  m.def("forward", &forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("causal") = true,
        py::arg("log_values") = false, py::arg("state") = nullptr, py::arg("chunk") = 64,
        "q, k: [B, H, n, dk], v: [B, H, n, dv] (log-values if log_values) -> (y, log_d). A "
        "state, if given, is continued and updated in place.");
  m.def("backward", &backward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("y"),
        py::arg("log_d"), py::arg("gy"), py::arg("causal") = true, py::arg("log_values") = false,
        py::arg("state_in") = nullptr, py::arg("chunk") = 64,
        "Gradients (gq, gk, gv) of the forward's output y given gy = dL/dy.");
  m.def("step", &step, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("state"),
        "One token per head: q, k [B, H, dk], v [B, H, dv] -> (y [B, H, dv], log_d [B, H]).");
  m.def(
      "add_keys",
      [](const Array& k, const Array& v, AttentionState& state) {
        expect_ndim("add_keys", "k", k, 4);
        py::gil_scoped_release release;
        logattn::attention_add_keys(view(k), view(v), k.shape(2), state);
      },
      py::arg("k"), py::arg("v"), py::arg("state"), "Non-causal streaming: add keys to a state.");
  m.def(
      "read",
      [](const Array& q, const AttentionState& state) {
        expect_ndim("read", "q", q, 4);
        Array y = empty({state.batch(), state.heads(), q.shape(2), state.d_val()});
        Array log_d = empty({state.batch(), state.heads(), q.shape(2)});
        {
          py::gil_scoped_release release;
          logattn::attention_read(view(q), q.shape(2), view_mut(y), state, view_mut(log_d));
        }
        return py::make_tuple(y, log_d);
      },
      py::arg("q"), py::arg("state"), "Non-causal streaming: read queries against a state.");
}
