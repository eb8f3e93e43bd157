// sparsert._core: the private pybind11 module. The public Python API lives in
// the sparsert package, which checks and converts user input and wraps this.
// It includes only the public header, like any application would.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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

py::dtype numpy_dtype(sparsert::DType d) {
  switch (d) {
    case sparsert::DType::kFloat32: return py::dtype::of<float>();
    case sparsert::DType::kInt32: return py::dtype::of<int32_t>();
    case sparsert::DType::kInt64: return py::dtype::of<int64_t>();
    case sparsert::DType::kBool: return py::dtype::of<bool>();
  }
  throw sparsert::Error(sparsert::ErrorCode::kInternal, "unknown dtype");
}

// The runtime dtype of a numpy array, checked by the Python layer already. Compared by
// equivalence, not identity: an array that arrived by pickle (multiprocessing, Dask, Ray)
// carries its own dtype object, equal to but not the same as numpy's canonical one.
sparsert::DType dtype_of(const py::array& a) {
  const py::dtype d = a.dtype();
  if (d.equal(py::dtype::of<float>())) return sparsert::DType::kFloat32;
  if (d.equal(py::dtype::of<int32_t>())) return sparsert::DType::kInt32;
  if (d.equal(py::dtype::of<int64_t>())) return sparsert::DType::kInt64;
  if (d.equal(py::dtype::of<bool>())) return sparsert::DType::kBool;
  throw py::value_error("unsupported array dtype " + py::str(d).cast<std::string>());
}

py::dict spec_dict(const sparsert::TensorSpec& spec) {
  py::dict d;
  d["name"] = spec.name;
  d["dtype"] = sparsert::dtype_name(spec.dtype);
  d["shape"] = spec.shape_known ? py::object(py::tuple(py::cast(spec.shape))) : py::object(py::none());
  d["dim_names"] = py::tuple(py::cast(spec.dim_names));
  return d;
}

std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

// Views of the caller's arrays (kept alive by `arrays`), checked by the
// Python layer to be C-contiguous and of the model's dtypes.
std::vector<sparsert::Tensor> views_of(const std::vector<py::array>& arrays) {
  std::vector<sparsert::Tensor> views;
  for (const auto& a : arrays) {
    if (!(a.flags() & py::array::c_style)) throw py::value_error("inputs must be C-contiguous");
    views.push_back(sparsert::Tensor::view(const_cast<void*>(a.data()), shape_of(a), dtype_of(a)));
  }
  return views;
}

py::list run(const sparsert::Model& model, const std::vector<py::array>& arrays) {
  std::vector<sparsert::Tensor> inputs = views_of(arrays);
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& a : arrays) shapes.push_back(shape_of(a));
  std::vector<std::vector<int64_t>> out_shapes;
  {
    py::gil_scoped_release release;
    out_shapes = model.output_shapes(shapes);
  }
  std::vector<py::array> out_arrays;
  std::vector<sparsert::Tensor> outputs;
  for (size_t i = 0; i < out_shapes.size(); ++i) {
    const sparsert::DType d = model.outputs()[i].dtype;
    std::vector<py::ssize_t> dims(out_shapes[i].begin(), out_shapes[i].end());
    py::array a(numpy_dtype(d), dims);
    outputs.push_back(sparsert::Tensor::view(a.mutable_data(), out_shapes[i], d));
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

// Runs into caller-owned arrays (checked by the Python layer: C-contiguous,
// writeable, the output shapes and dtypes).
void run_into(const sparsert::Model& model, const std::vector<py::array>& arrays, std::vector<py::array>& outs) {
  std::vector<sparsert::Tensor> inputs = views_of(arrays);
  std::vector<sparsert::Tensor> outputs;
  for (auto& a : outs) {
    if (!(a.flags() & py::array::c_style) || !a.writeable())
      throw py::value_error("out arrays must be C-contiguous and writeable");
    outputs.push_back(sparsert::Tensor::view(a.mutable_data(), shape_of(a), dtype_of(a)));
  }
  py::gil_scoped_release release;
  model.run(inputs, outputs);
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

sparsert::LoadOptions options_from(const py::dict& d) {
  sparsert::LoadOptions o;
  for (auto item : d) {
    const std::string key = py::str(item.first);
    py::handle v = item.second;
    if (key == "threads") o.threads = v.cast<int>();
    else if (key == "verify") o.verify_checksum = v.cast<bool>();
    else if (key == "tune") o.tune = v.cast<bool>();
    else if (key == "mmap") o.mmap = v.cast<bool>();
    else if (key == "isa") o.isa = v.is_none() ? std::string() : v.cast<std::string>();
    else if (key == "disabled_passes") o.disabled_passes = v.cast<std::vector<std::string>>();
    else if (key == "layer_kernel") o.layer_kernel = v.cast<std::string>();
    else if (key == "conv_sparse_path") o.conv_sparse_path = v.cast<std::string>();
    else if (key == "conv_dense_path") o.conv_dense_path = v.cast<std::string>();
    else if (key == "max_cached_plans") o.max_cached_plans = v.cast<int>();
    else if (key == "tune_cache") o.tune_cache = v.cast<std::string>();
    else throw py::value_error("unknown load option '" + key + "'");
  }
  return o;
}

// --- the .spr reader for Python --------------------------------------------------

py::object value_to_python(const sparsert::spr::Value& v) {
  using sparsert::spr::ValueType;
  switch (v.type) {
    case ValueType::kInt: return py::int_(v.i);
    case ValueType::kFloat: return py::float_(v.f);
    case ValueType::kString: return py::str(v.s);
    case ValueType::kInts: return py::cast(v.ints);
    case ValueType::kFloats: return py::cast(v.floats);
    case ValueType::kStrings: return py::cast(v.strings);
  }
  return py::none();
}

py::dict node_dict(const sparsert::spr::Node& n) {
  py::dict d;
  d["name"] = n.name;
  d["op_type"] = n.op_type;
  d["inputs"] = py::cast(n.inputs);
  d["outputs"] = py::cast(n.outputs);
  py::list attrs;
  for (const auto& kv : n.attrs) attrs.append(py::make_tuple(kv.first, value_to_python(kv.second)));
  d["attrs"] = attrs;
  return d;
}

// A read-only numpy view of file bytes; `owner` keeps them alive.
py::array view(const py::capsule& owner, py::dtype dtype, std::vector<py::ssize_t> shape, const void* data) {
  py::array a(dtype, shape, {}, data, owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

py::dict file_to_python(sparsert::spr::ModelFile file) {
  auto* keep = new std::shared_ptr<const void>(file.owner);
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<const void>*>(p); });
  py::dict out;
  out["version"] = file.version;
  out["alignment"] = file.alignment;
  py::list metadata;
  for (const auto& kv : file.metadata) metadata.append(py::make_tuple(kv.first, value_to_python(kv.second)));
  out["metadata"] = metadata;
  py::list inputs;
  for (const auto& in : file.inputs) {
    py::dict d;
    d["name"] = in.name;
    d["dtype"] = sparsert::dtype_name(in.dtype);
    d["shape"] = py::tuple(py::cast(in.dims));
    d["dim_names"] = py::tuple(py::cast(in.dim_names));
    inputs.append(d);
  }
  out["inputs"] = inputs;
  out["outputs"] = py::cast(file.outputs);
  py::list nodes;
  for (const auto& n : file.nodes) nodes.append(node_dict(n));
  out["nodes"] = nodes;
  py::list tensors;
  for (const auto& t : file.tensors) {
    py::dict d;
    d["name"] = t.name;
    d["dtype"] = sparsert::dtype_name(t.dtype);
    d["dims"] = py::tuple(py::cast(t.dims));
    d["stored_bytes"] = t.stored_bytes();
    const py::ssize_t nnz = static_cast<py::ssize_t>(t.nnz);
    switch (t.storage) {
      case sparsert::spr::Storage::kDense: {
        d["storage"] = "dense";
        std::vector<py::ssize_t> shape(t.dims.begin(), t.dims.end());
        d["data"] = view(owner, numpy_dtype(t.dtype), shape, t.data);
        break;
      }
      case sparsert::spr::Storage::kCsr:
      case sparsert::spr::Storage::kBsr: {
        const bool bsr = t.storage == sparsert::spr::Storage::kBsr;
        d["storage"] = bsr ? "bsr" : "csr";
        d["index_bits"] = t.index_bits;
        d["block"] = py::make_tuple(t.block_rows, t.block_cols);
        const py::ssize_t row_blocks = static_cast<py::ssize_t>(t.rows / t.block_rows);
        d["row_ptr"] = view(owner, py::dtype::of<uint32_t>(), {row_blocks + 1}, t.row_ptr);
        if (t.index_bits == 16)
          d["col_idx"] = view(owner, py::dtype::of<uint16_t>(), {nnz}, t.col_idx16);
        else
          d["col_idx"] = view(owner, py::dtype::of<uint32_t>(), {nnz}, t.col_idx32);
        if (bsr)
          d["values"] = view(owner, py::dtype::of<float>(),
                             {nnz, static_cast<py::ssize_t>(t.block_rows), static_cast<py::ssize_t>(t.block_cols)},
                             t.values);
        else
          d["values"] = view(owner, py::dtype::of<float>(), {nnz}, t.values);
        break;
      }
    }
    tensors.append(d);
  }
  out["tensors"] = tensors;
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "sparsert native runtime (private; use the sparsert package)";
  // One exception class per kind, defined in Python (sparsert.errors).
  py::module_ errors = py::module_::import("sparsert.errors");
  g_format_error = errors.attr("FormatError").ptr();
  g_unsupported_error = errors.attr("UnsupportedError").ptr();
  Py_INCREF(g_format_error);
  Py_INCREF(g_unsupported_error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const sparsert::Error& e) {
      translate(e);
    }
  });

  m.attr("__version__") = sparsert::version();
  m.attr("max_threads") = sparsert::kMaxThreads;
  m.def("version", &sparsert::version);
  m.def("cpu_features", &sparsert::cpu_features);
  m.def("cache_sizes", [] {
    const sparsert::CacheSizes c = sparsert::cache_sizes();
    py::dict d;
    d["l1d"] = c.l1d;
    d["l2"] = c.l2;
    d["l3"] = c.l3;
    d["source"] = c.source;
    return d;
  });
  m.def("supported_isas", &sparsert::supported_isas);
  m.def("supported_ops", &sparsert::supported_ops);
  m.def("pass_names", &sparsert::pass_names);
  m.def("default_threads", &sparsert::default_threads);
  m.def("thread_pool_stalls", &sparsert::thread_pool_stalls);
  m.def("activations", [] {
    py::list out;
    for (const auto& a : sparsert::activations()) {
      py::dict d;
      d["op_type"] = a.op_type;
      d["fused_name"] = a.fused_name;
      d["params"] = py::cast(a.param_names);
      d["defaults"] = py::cast(a.param_defaults);
      out.append(d);
    }
    return out;
  });
  m.def(
      "read_spr_file",
      [](const std::string& path, bool verify) {
        sparsert::spr::ModelFile f;
        {
          py::gil_scoped_release release;
          f = sparsert::spr::read_spr_file(path, verify, false);
        }
        return file_to_python(std::move(f));
      },
      py::arg("path"), py::arg("verify") = true);
  m.def(
      "read_spr_buffer",
      [](py::buffer data, bool verify) {
        py::buffer_info info = data.request();
        const size_t size = static_cast<size_t>(info.size * info.itemsize);
        sparsert::spr::ModelFile f;
        {
          py::gil_scoped_release release;
          f = sparsert::spr::read_spr_buffer(info.ptr, size, verify);
        }
        return file_to_python(std::move(f));
      },
      py::arg("data"), py::arg("verify") = true);

  py::class_<sparsert::Model>(m, "Model")
      .def_static(
          "load",
          [](const std::string& path, const py::dict& options) {
            const sparsert::LoadOptions o = options_from(options);
            py::gil_scoped_release release;
            return sparsert::Model::load(path, o);
          },
          py::arg("path"), py::arg("options") = py::dict())
      .def_static(
          "load_from_buffer",
          [](py::buffer data, const py::dict& options) {
            py::buffer_info info = data.request();
            const sparsert::LoadOptions o = options_from(options);
            const size_t size = static_cast<size_t>(info.size * info.itemsize);
            const void* ptr = info.ptr;
            py::gil_scoped_release release;
            return sparsert::Model::load_from_buffer(ptr, size, o);
          },
          py::arg("data"), py::arg("options") = py::dict())
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
      .def_property_readonly("metadata_values",
                             [](const sparsert::Model& model) {
                               py::dict out;
                               for (const auto& kv : model.metadata_values())
                                 out[py::str(kv.first)] = value_to_python(kv.second);
                               return out;
                             })
      .def_property_readonly("threads", &sparsert::Model::threads)
      .def_property_readonly("isa", &sparsert::Model::isa)
      .def_property_readonly("load_log", &sparsert::Model::load_log)
      .def_property_readonly("nodes",
                             [](const sparsert::Model& model) {
                               py::list out;
                               for (const auto& n : model.nodes()) out.append(node_dict(n));
                               return out;
                             })
      .def("run", &run, py::arg("inputs"))
      .def("run_into", &run_into, py::arg("inputs"), py::arg("outputs"))
      .def("output_shapes",
           [](const sparsert::Model& model, const std::vector<std::vector<int64_t>>& shapes) {
             py::gil_scoped_release release;
             return model.output_shapes(shapes);
           })
      .def("summary", &summary, py::arg("input_shapes") = std::vector<std::vector<int64_t>>{})
      .def(
          "profile",
          [](const sparsert::Model& model, const std::vector<py::array>& arrays, int repeats) {
            std::vector<sparsert::Tensor> inputs = views_of(arrays);
            py::gil_scoped_release release;
            return model.profile(inputs, repeats);
          },
          py::arg("inputs"), py::arg("repeats") = 10)
      .def("release_memory",
           [](const sparsert::Model& model) {
             py::gil_scoped_release release;
             model.release_memory();
           })
      .def_property_readonly("cached_bytes", &sparsert::Model::cached_bytes);
}
