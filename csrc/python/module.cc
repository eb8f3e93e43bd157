// sparsert._core: the private pybind11 module. The public Python API lives in
// sparsert/__init__.py, which checks and converts user input and wraps this.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ops/op.h"
#include "sparsert/sparsert.h"

namespace py = pybind11;

namespace {

PyObject* g_format_error = nullptr;
PyObject* g_unsupported_error = nullptr;

void translate(const sparsert::Error& e) {
  switch (e.code()) {
    case sparsert::ErrorCode::kFormat: PyErr_SetString(g_format_error, e.what()); return;
    case sparsert::ErrorCode::kUnsupported: PyErr_SetString(g_unsupported_error, e.what()); return;
    case sparsert::ErrorCode::kInvalidArgument: PyErr_SetString(PyExc_ValueError, e.what()); return;
    case sparsert::ErrorCode::kIO: PyErr_SetString(PyExc_OSError, e.what()); return;
    case sparsert::ErrorCode::kResource: PyErr_SetString(PyExc_MemoryError, e.what()); return;
    case sparsert::ErrorCode::kInternal: PyErr_SetString(PyExc_RuntimeError, e.what()); return;
  }
  PyErr_SetString(PyExc_RuntimeError, e.what());
}

py::dict spec_dict(const sparsert::TensorSpec& spec) {
  py::dict d;
  d["name"] = spec.name;
  d["dtype"] = sparsert::dtype_name(spec.dtype);
  d["shape"] = py::tuple(py::cast(spec.shape));
  return d;
}

using FloatArray = py::array_t<float, py::array::c_style>;

// Views of the caller's arrays (kept alive by `arrays`), checked by the
// Python layer to be C-contiguous float32.
std::vector<sparsert::Tensor> views_of(const std::vector<FloatArray>& arrays) {
  std::vector<sparsert::Tensor> views;
  for (const auto& a : arrays) {
    std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
    views.push_back(sparsert::Tensor::view(const_cast<float*>(a.data()), shape));
  }
  return views;
}

std::vector<std::vector<int64_t>> shapes_of(const std::vector<FloatArray>& arrays) {
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& a : arrays) shapes.emplace_back(a.shape(), a.shape() + a.ndim());
  return shapes;
}

py::list run(const sparsert::Model& model, const std::vector<FloatArray>& arrays) {
  std::vector<sparsert::Tensor> inputs = views_of(arrays);
  std::vector<std::vector<int64_t>> out_shapes;
  {
    py::gil_scoped_release release;
    out_shapes = model.output_shapes(shapes_of(arrays));
  }
  std::vector<FloatArray> out_arrays;
  std::vector<sparsert::Tensor> outputs;
  for (const auto& s : out_shapes) {
    std::vector<py::ssize_t> dims(s.begin(), s.end());
    FloatArray a(dims);
    outputs.push_back(sparsert::Tensor::view(a.mutable_data(), s));
    out_arrays.push_back(std::move(a));
  }
  {
    py::gil_scoped_release release;
    model.run(inputs, outputs);
  }
  py::list result;
  for (auto& a : out_arrays) result.append(std::move(a));
  return result;
}

py::list summary(const sparsert::Model& model, const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<sparsert::NodeInfo> rows;
  {
    py::gil_scoped_release release;
    rows = model.summary(shapes);
  }
  py::list out;
  for (const auto& r : rows) {
    py::dict d;
    d["name"] = r.name;
    d["op"] = r.op;
    d["input_shapes"] = r.input_shapes;
    d["output_shapes"] = r.output_shapes;
    d["weight_storage"] = r.weight_storage;
    d["weight_shape"] = r.weight_shape;
    d["weight_elements"] = r.weight_elements;
    d["weight_nnz"] = r.weight_nnz;
    d["weight_bytes"] = r.weight_bytes;
    d["flops"] = r.flops;
    d["dense_flops"] = r.dense_flops;
    d["kernel"] = r.kernel;
    d["time_ms"] = r.time_ms < 0 ? py::object(py::none()) : py::object(py::float_(r.time_ms));
    out.append(d);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "sparsert native runtime (private; use the sparsert package)";
  // One exception class per kind for the Python and C++ readers alike.
  py::module_ errors = py::module_::import("sparsert.errors");
  g_format_error = errors.attr("FormatError").ptr();
  g_unsupported_error = errors.attr("UnsupportedError").ptr();
  Py_INCREF(g_format_error);
  Py_INCREF(g_unsupported_error);
  m.attr("FormatError") = py::handle(g_format_error);
  m.attr("UnsupportedError") = py::handle(g_unsupported_error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const sparsert::Error& e) {
      translate(e);
    }
  });

  m.def("version", &sparsert::version);
  m.def("cpu_features", &sparsert::cpu_features);
  m.def("supported_ops", &sparsert::ops::supported_op_types);

  py::class_<sparsert::Model>(m, "Model")
      .def_static(
          "load",
          [](const std::string& path, int threads, bool verify, bool tune) {
            sparsert::LoadOptions options;
            options.threads = threads;
            options.verify_checksum = verify;
            options.tune = tune;
            py::gil_scoped_release release;
            return sparsert::Model::load(path, options);
          },
          py::arg("path"), py::arg("threads") = 0, py::arg("verify") = true, py::arg("tune") = false)
      .def_static(
          "load_from_buffer",
          [](py::buffer data, int threads, bool verify, bool tune) {
            py::buffer_info info = data.request();
            sparsert::LoadOptions options;
            options.threads = threads;
            options.verify_checksum = verify;
            options.tune = tune;
            const size_t size = static_cast<size_t>(info.size * info.itemsize);
            const void* ptr = info.ptr;
            py::gil_scoped_release release;
            return sparsert::Model::load_from_buffer(ptr, size, options);
          },
          py::arg("data"), py::arg("threads") = 0, py::arg("verify") = true, py::arg("tune") = false)
      .def_property_readonly("inputs",
                             [](const sparsert::Model& model) {
                               py::list out;
                               for (const auto& s : model.inputs()) out.append(spec_dict(s));
                               return out;
                             })
      .def_property_readonly("outputs",
                             [](const sparsert::Model& model) {
                               py::list out;
                               for (const auto& s : model.outputs()) out.append(spec_dict(s));
                               return out;
                             })
      .def_property_readonly("metadata", &sparsert::Model::metadata)
      .def_property_readonly("threads", &sparsert::Model::threads)
      .def("run", &run, py::arg("inputs"))
      .def("output_shapes",
           [](const sparsert::Model& model, const std::vector<std::vector<int64_t>>& shapes) {
             py::gil_scoped_release release;
             return model.output_shapes(shapes);
           })
      .def("summary", &summary, py::arg("input_shapes") = std::vector<std::vector<int64_t>>{})
      .def(
          "profile",
          [](const sparsert::Model& model, const std::vector<FloatArray>& arrays, int repeats) {
            std::vector<sparsert::Tensor> inputs = views_of(arrays);
            py::gil_scoped_release release;
            return model.profile(inputs, repeats);
          },
          py::arg("inputs"), py::arg("repeats") = 10);
}
